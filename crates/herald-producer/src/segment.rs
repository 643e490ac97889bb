//! Streaming segment files (ARCHITECTURE.md, "Segment sources"): CSV with a header row, or JSONL
//! with one object per line. One row is in memory at a time whatever the file's size. A malformed
//! row is an `Err(ReadError::Row)` with its line number and the reader goes on; deciding to skip or
//! abort (`--strict`) is the caller's job, and so is everything a valid row means (filters, window,
//! blank PSIDs). A row whose `external_id` or PSID fails `herald_core::validate_id` is malformed. A
//! row longer than `MAX_LINE_BYTES` stops the reading (`ReadError::Stopped` naming its line) before
//! it is buffered, and so does a failing read: nothing after it can be trusted to be read.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use herald_core::user::User;
use herald_core::{IdError, validate_id};

mod cap;

pub use cap::MAX_LINE_BYTES;
use cap::{Capped, LineTooLong};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The two file formats a segment can come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFormat {
    /// Comma-separated, header row first.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl SegmentFormat {
    /// Picks the format from a file name: `.jsonl`/`.ndjson` are JSONL, everything else CSV.
    pub fn from_path(path: &Path) -> Self {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("jsonl" | "ndjson") => Self::Jsonl,
            _ => Self::Csv,
        }
    }
}

/// A valid row and the line it started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based line number in the file.
    pub line: u64,
    /// The user it describes.
    pub user: User,
}

/// A row that could not be read. Its text is not echoed: rows hold personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RowError {
    /// 1-based line number in the file.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// A problem with the whole file: nothing can be read from it.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The file could not be opened or read.
    #[error("cannot read the segment: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV header lacks a required column.
    #[error("the CSV header has no `{0}` column (required: external_id, messenger_id or psid)")]
    MissingColumn(&'static str),
    /// The CSV header itself is unreadable.
    #[error("the CSV header cannot be read: {0}")]
    BadHeader(String),
    /// A row is longer than `MAX_LINE_BYTES`.
    #[error(
        "line {line} is longer than {MAX_LINE_BYTES} bytes; a segment row holds one user, so \
         this is not a CSV or JSONL segment (or a CSV quote is never closed)"
    )]
    LineTooLong {
        /// 1-based line the row starts on.
        line: u64,
    },
    /// The input failed part way.
    #[error("cannot read the segment after line {line}: {source}")]
    Read {
        /// The last line read.
        line: u64,
        /// What failed.
        source: std::io::Error,
    },
}

impl SegmentError {
    /// A failed read: the cap's error becomes `LineTooLong`.
    fn read(error: std::io::Error, line: u64) -> Self {
        match LineTooLong::within(&error) {
            Some(too_long) => Self::LineTooLong {
                line: too_long.line,
            },
            None => Self::Read {
                line: line.saturating_sub(1),
                source: error,
            },
        }
    }
}

/// Why the reader gave no row.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// This row is malformed; the rows after it are read as usual.
    #[error(transparent)]
    Row(#[from] RowError),
    /// Reading stops here: the reader ends after this.
    #[error(transparent)]
    Stopped(SegmentError),
}

/// Reads users one at a time from a CSV or JSONL stream.
pub struct SegmentReader {
    inner: Inner,
    stopped: bool,
}

enum Inner {
    Csv(CsvRows),
    Jsonl(JsonlRows),
}

struct CsvRows {
    reader: csv::Reader<Capped<Box<dyn Read + Send>>>,
    record: csv::StringRecord,
    columns: Vec<Column>,
}

#[derive(Debug, Clone)]
enum Column {
    ExternalId,
    MessengerId,
    LastInboundAt,
    Attribute(String),
}

struct JsonlRows {
    reader: BufReader<Capped<Box<dyn Read + Send>>>,
    line: u64,
    bytes: u64,
    buffer: String,
}

impl SegmentReader {
    /// Opens a segment file, choosing the format by its extension.
    pub fn open(path: &Path) -> Result<Self, SegmentError> {
        let file = std::fs::File::open(path)?;
        Self::new(Box::new(file), SegmentFormat::from_path(path))
    }

    /// Reads a segment from any stream. For CSV the header is read (and checked) here.
    pub fn new(input: Box<dyn Read + Send>, format: SegmentFormat) -> Result<Self, SegmentError> {
        let inner = match format {
            SegmentFormat::Csv => Inner::Csv(CsvRows::new(input)?),
            SegmentFormat::Jsonl => Inner::Jsonl(JsonlRows {
                reader: BufReader::with_capacity(64 * 1024, Capped::new(input, false)),
                line: 0,
                bytes: 0,
                buffer: String::new(),
            }),
        };
        Ok(Self {
            inner,
            stopped: false,
        })
    }
}

impl SegmentReader {
    /// Bytes of input consumed so far (for progress and ETA).
    pub fn bytes_read(&self) -> u64 {
        match &self.inner {
            Inner::Csv(rows) => rows.reader.position().byte(),
            Inner::Jsonl(rows) => rows.bytes,
        }
    }
}

impl Iterator for SegmentReader {
    type Item = Result<Row, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        let next = match &mut self.inner {
            Inner::Csv(rows) => rows.next_row(),
            Inner::Jsonl(rows) => rows.next_row(),
        };
        self.stopped = matches!(next, Some(Err(ReadError::Stopped(_))));
        next
    }
}

impl CsvRows {
    fn new(input: Box<dyn Read + Send>) -> Result<Self, SegmentError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(Capped::new(input, true));
        let headers = match reader.headers() {
            Ok(headers) => headers.clone(),
            Err(error) => {
                let text = error.to_string();
                return Err(match error.into_kind() {
                    csv::ErrorKind::Io(error) => SegmentError::read(error, 1),
                    _ => SegmentError::BadHeader(text),
                });
            }
        };
        let columns: Vec<Column> = headers
            .iter()
            .enumerate()
            .map(|(index, name)| {
                // A UTF-8 byte order mark sticks to the first column name when Excel saves CSV.
                let name = if index == 0 {
                    name.trim_start_matches('\u{feff}')
                } else {
                    name
                };
                match name.trim() {
                    "external_id" => Column::ExternalId,
                    "messenger_id" | "psid" => Column::MessengerId,
                    "last_inbound_at" => Column::LastInboundAt,
                    other => Column::Attribute(other.to_owned()),
                }
            })
            .collect();
        if !columns.iter().any(|c| matches!(c, Column::ExternalId)) {
            return Err(SegmentError::MissingColumn("external_id"));
        }
        if !columns.iter().any(|c| matches!(c, Column::MessengerId)) {
            return Err(SegmentError::MissingColumn("messenger_id"));
        }
        Ok(Self {
            reader,
            record: csv::StringRecord::new(),
            columns,
        })
    }

    fn next_row(&mut self) -> Option<Result<Row, ReadError>> {
        loop {
            let line = self.reader.position().line();
            match self.reader.read_record(&mut self.record) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(error) => {
                    let line = error.position().map_or(line, csv::Position::line);
                    let reason = match error.into_kind() {
                        csv::ErrorKind::Io(error) => {
                            return Some(Err(ReadError::Stopped(SegmentError::read(error, line))));
                        }
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => {
                            format!("{len} fields where the header has {expected_len}")
                        }
                        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
                        _ => "unreadable CSV".to_owned(),
                    };
                    return Some(Err(RowError { line, reason }.into()));
                }
            }
            let line = self.record.position().map_or(line, csv::Position::line);
            // A line with only separators or nothing on it is not a user.
            if self.record.iter().all(|field| field.trim().is_empty()) {
                continue;
            }
            return Some(
                self.user(line)
                    .map(|user| Row { line, user })
                    .map_err(ReadError::Row),
            );
        }
    }

    fn user(&self, line: u64) -> Result<User, RowError> {
        let mut user = User::default();
        for (column, value) in self.columns.iter().zip(self.record.iter()) {
            match column {
                Column::ExternalId => user.external_id = value.trim().to_owned(),
                Column::MessengerId => user.messenger_id = Some(value.trim().to_owned()),
                Column::LastInboundAt => user.last_inbound_at = parse_time(value, line)?,
                Column::Attribute(name) => {
                    user.attributes.insert(name.clone(), value.to_owned());
                }
            }
        }
        check_ids(&user, line)?;
        Ok(user)
    }
}

impl JsonlRows {
    fn next_row(&mut self) -> Option<Result<Row, ReadError>> {
        loop {
            self.buffer.clear();
            self.line += 1;
            let line = self.line;
            match self.reader.read_line(&mut self.buffer) {
                Ok(0) => return None,
                Ok(n) => self.bytes += n as u64,
                Err(error)
                    if error.kind() == std::io::ErrorKind::InvalidData
                        && LineTooLong::within(&error).is_none() =>
                {
                    // read_line has read the whole line (up to its \n) before checking it.
                    return Some(Err(RowError {
                        line,
                        reason: "not valid UTF-8".to_owned(),
                    }
                    .into()));
                }
                Err(error) => {
                    return Some(Err(ReadError::Stopped(SegmentError::read(error, line))));
                }
            }
            if self.buffer.trim().is_empty() {
                continue;
            }
            return Some(
                parse_json_user(&self.buffer, line)
                    .map(|user| Row { line, user })
                    .map_err(ReadError::Row),
            );
        }
    }
}

fn parse_json_user(text: &str, line: u64) -> Result<User, RowError> {
    let error = |reason: String| RowError { line, reason };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| error(format!("not JSON ({})", json_error_kind(&e))))?;
    let serde_json::Value::Object(object) = value else {
        return Err(error("not a JSON object".to_owned()));
    };
    let mut user = User {
        attributes: BTreeMap::new(),
        ..User::default()
    };
    for (key, value) in object {
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            other => other.to_string(),
        };
        match key.as_str() {
            "external_id" => user.external_id = text.trim().to_owned(),
            "messenger_id" | "psid" => user.messenger_id = Some(text.trim().to_owned()),
            "last_inbound_at" => user.last_inbound_at = parse_time(&text, line)?,
            _ => {
                user.attributes.insert(key, text);
            }
        }
    }
    check_ids(&user, line)?;
    Ok(user)
}

/// The row's ids as `herald_core::validate_id` wants them; a blank PSID is left to the planner
/// (a `blank_psid` skip).
fn check_ids(user: &User, line: u64) -> Result<(), RowError> {
    let error = |reason: String| RowError { line, reason };
    match validate_id(&user.external_id) {
        Ok(()) => {}
        Err(IdError::Empty) => return Err(error("external_id is missing or blank".to_owned())),
        Err(other) => return Err(error(format!("external_id {other}"))),
    }
    if let Some(psid) = user.messenger_id.as_deref().filter(|psid| !psid.is_empty())
        && let Err(other) = validate_id(psid)
    {
        return Err(error(format!("messenger_id {other}")));
    }
    Ok(())
}

fn parse_time(value: &str, line: u64) -> Result<Option<OffsetDateTime>, RowError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    OffsetDateTime::parse(value, &Rfc3339)
        .map(Some)
        .map_err(|_| RowError {
            line,
            reason: "last_inbound_at is not an RFC 3339 time (e.g. 2026-11-21T09:30:00Z)"
                .to_owned(),
        })
}

/// Names a JSON error's category without echoing the input (rows hold personal data).
fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "truncated",
    }
}

#[cfg(test)]
mod tests;
