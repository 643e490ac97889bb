//! Tiny HTTP/1.1 servers on 127.0.0.1 for the client tests: one answers every request with a
//! canned response (keeping connections alive) and reports what it received; one never answers;
//! one answers with a body that never ends and counts what it wrote.

use std::net::SocketAddr;

use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One request as the server saw it.
#[derive(Debug)]
pub(super) struct Captured {
    pub(super) target: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    pub(super) connection: usize,
}

impl Captured {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(super) fn query(&self) -> Vec<(String, String)> {
        let url = Url::parse(&format!("http://server{}", self.target)).expect("request target");
        url.query_pairs()
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect()
    }
}

pub(super) fn http_response(
    status_line: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut response = format!(
        "HTTP/1.1 {status_line}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    response
}

/// Serves `response` to every request, keeping connections alive, and reports each request.
pub(super) async fn canned_server(
    response: String,
) -> (SocketAddr, mpsc::UnboundedReceiver<Captured>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (requests, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut connection = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            connection += 1;
            let (requests, response) = (requests.clone(), response.clone());
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                while let Some((target, headers, body)) =
                    read_request(&mut stream, &mut buffer).await
                {
                    let _ = requests.send(Captured {
                        target,
                        headers,
                        body,
                        connection,
                    });
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Accepts connections, reads whatever comes, never answers.
pub(super) async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = Vec::new();
                while matches!(stream.read_buf(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// Answers each connection's first request with `status_line` and a body without a length that
/// goes on until the client hangs up; the bytes of body written so far are in the counter.
pub(super) async fn endless_server(
    status_line: &'static str,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let written = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                if read_request(&mut stream, &mut buffer).await.is_none() {
                    return;
                }
                let head = format!(
                    "HTTP/1.1 {status_line}\r\nContent-Type: application/json\r\n\
                     Connection: close\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                while stream.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(chunk.len(), Ordering::Relaxed);
                }
            });
        }
    });
    (addr, written)
}

type Request = (String, Vec<(String, String)>, Vec<u8>);

/// Reads one HTTP/1.1 request (head plus `Content-Length` body) from a kept-alive stream.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let target = lines.next()?.split(' ').nth(1)?.to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|line| line.split_once(':'))
                .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .and_then(|(_, value)| value.parse().ok())
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                if stream.read_buf(buffer).await.ok()? == 0 {
                    return None;
                }
            }
            let body = buffer[end + 4..end + 4 + length].to_vec();
            buffer.drain(..end + 4 + length);
            return Some((target, headers, body));
        }
        if stream.read_buf(buffer).await.ok()? == 0 {
            return None;
        }
    }
}
