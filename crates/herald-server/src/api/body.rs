//! Reading requests: a whole body with its limit (413 as JSON, not axum's plain text), JSON
//! with the line and column of a syntax error, query strings with a JSON 400, and
//! `ChannelReader`, which lets a blocking reader (the CSV and JSONL parser) read a streamed body.

use std::io::Read;

use axum::extract::Query;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Buf, Bytes};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::api::error::ApiError;

/// The body, or 413 / 400 as JSON.
pub(crate) fn bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "the request body is too large for this route")
        } else {
            ApiError::new(status, format!("cannot read the request body: {rejection}"))
        }
    })
}

/// The body parsed as JSON; an empty body reads as `empty` when one is given.
pub(crate) fn json<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    empty: Option<T>,
) -> Result<T, ApiError> {
    let body = bytes(body)?;
    if body.iter().all(u8::is_ascii_whitespace)
        && let Some(empty) = empty
    {
        return Ok(empty);
    }
    serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(format!(
            "the body is not the JSON this route takes (line {}, column {}): {}",
            error.line(),
            error.column(),
            without_position(&error)
        ))
    })
}

/// serde_json's message without its " at line L column C" tail (given separately).
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The query string, or 400 as JSON.
pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(query)| query)
        .map_err(|rejection| ApiError::bad_request(format!("bad query string: {rejection}")))
}

/// The media type of the request (`text/csv`), lower case, without parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim().to_ascii_lowercase();
    (!media.is_empty()).then_some(media)
}

/// A blocking `Read` over chunks sent from async code. An error is returned once, then the
/// reader is at its end.
pub(crate) struct ChannelReader {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
    done: bool,
}

impl ChannelReader {
    pub(crate) fn new(chunks: mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
            done: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(error)) => {
                    self.done = true;
                    return Err(error);
                }
                None => self.done = true,
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// `value` as JSON with `status` and a `Location` header pointing at `location`.
pub(crate) fn located<T: serde::Serialize>(
    status: axum::http::StatusCode,
    value: T,
    location: &str,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = (status, axum::Json(value)).into_response();
    if let Ok(location) = axum::http::HeaderValue::from_str(location) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, location);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_reader_yields_every_byte_then_its_error_once() {
        let (sender, receiver) = mpsc::channel(4);
        let mut reader = ChannelReader::new(receiver);
        let thread = std::thread::spawn(move || {
            let mut text = Vec::new();
            let error = reader
                .read_to_end(&mut text)
                .expect_err("the error comes through");
            let mut rest = Vec::new();
            assert_eq!(reader.read_to_end(&mut rest).expect("then the end"), 0);
            (text, error.to_string())
        });
        sender
            .blocking_send(Ok(Bytes::from_static(b"external_id,")))
            .expect("send");
        sender.blocking_send(Ok(Bytes::new())).expect("send");
        sender
            .blocking_send(Ok(Bytes::from_static(b"psid\n")))
            .expect("send");
        sender
            .blocking_send(Err(std::io::Error::other("cut short")))
            .expect("send");
        let (text, error) = thread.join().expect("reader thread");
        assert_eq!(text, b"external_id,psid\n");
        assert_eq!(error, "cut short");
    }
}
