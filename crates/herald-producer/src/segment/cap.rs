//! The line-length cap: a reader between the input and the parser that counts the bytes of the
//! current row and fails, with the row's first line, once a row passes `MAX_LINE_BYTES`. The
//! parsers buffer a whole row, so without it a file with no line breaks (`/dev/zero`, a binary
//! file, a CSV quote never closed) would grow memory until the process dies.
//!
//! A CSV row ends at a line break outside quotes, following the csv crate's rules (a quote opens
//! a quoted field only at the start of a field, `""` inside one is a quote); a JSONL row at `\n`.

use std::io::Read;

/// The longest row a segment may hold, in bytes (line break excluded). One user with its
/// attributes is far smaller; a longer row means the file is not a segment.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The error a capped reader fails with; the parsers find it inside their I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line} is longer than {MAX_LINE_BYTES} bytes")]
pub(crate) struct LineTooLong {
    /// 1-based line the row starts on.
    pub(crate) line: u64,
}

impl LineTooLong {
    /// The cap's error inside an I/O error, if that is what it is.
    pub(crate) fn within(error: &std::io::Error) -> Option<Self> {
        error.get_ref()?.downcast_ref::<Self>().copied()
    }
}

/// Where the CSV scanner is within a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Start,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the field's end, or the first half of `""`.
    QuoteInQuoted,
}

/// A reader that refuses rows over `limit` bytes.
pub(crate) struct Capped<R> {
    inner: R,
    csv: bool,
    limit: usize,
    field: Field,
    /// Bytes of the current row so far.
    row_bytes: usize,
    /// 1-based line the reader is on, and the one the current row started on.
    line: u64,
    row_line: u64,
    failed: Option<LineTooLong>,
}

impl<R: Read> Capped<R> {
    /// Caps `inner`'s rows; `csv` chooses the CSV rules for where a row ends.
    pub(crate) fn new(inner: R, csv: bool) -> Self {
        Self::with_limit(inner, csv, MAX_LINE_BYTES)
    }

    pub(crate) fn with_limit(inner: R, csv: bool, limit: usize) -> Self {
        Self {
            inner,
            csv,
            limit,
            field: Field::Start,
            row_bytes: 0,
            line: 1,
            row_line: 1,
            failed: None,
        }
    }

    /// Whether `byte` ends the current row, moving the CSV scanner along.
    fn ends_row(&mut self, byte: u8) -> bool {
        if !self.csv {
            return byte == b'\n';
        }
        let line_break = byte == b'\n' || byte == b'\r';
        let (next, ends) = match (self.field, byte) {
            (Field::Quoted, b'"') => (Field::QuoteInQuoted, false),
            (Field::Quoted, _) => (Field::Quoted, false),
            (Field::QuoteInQuoted, b'"') => (Field::Quoted, false),
            (Field::Start, b'"') => (Field::Quoted, false),
            (_, b',') => (Field::Start, false),
            (_, _) if line_break => (Field::Start, true),
            (_, _) => (Field::Unquoted, false),
        };
        self.field = next;
        ends
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if let Some(failed) = self.failed {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, failed));
        }
        let n = self.inner.read(buffer)?;
        for &byte in &buffer[..n] {
            let ends = self.ends_row(byte);
            if byte == b'\n' {
                self.line += 1;
            }
            if ends {
                self.row_bytes = 0;
                self.row_line = self.line;
                continue;
            }
            self.row_bytes += 1;
            if self.row_bytes > self.limit {
                let failed = LineTooLong {
                    line: self.row_line,
                };
                self.failed = Some(failed);
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, failed));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &[u8], csv: bool, limit: usize) -> Result<Vec<u8>, LineTooLong> {
        let mut out = Vec::new();
        Capped::with_limit(text, csv, limit)
            .read_to_end(&mut out)
            .map(|_| out)
            .map_err(|error| LineTooLong::within(&error).expect("the cap's error"))
    }

    #[test]
    fn rows_up_to_the_limit_pass_and_a_longer_one_names_its_first_line() {
        assert!(read_all(b"abcd\nefgh\r\nijkl", true, 4).is_ok());
        assert_eq!(
            read_all(b"abcd\nefghi\n", true, 4),
            Err(LineTooLong { line: 2 })
        );
        assert_eq!(
            read_all(b"ab\n\n\nabcde", false, 4),
            Err(LineTooLong { line: 4 })
        );
        // JSONL rows end at \n only.
        assert_eq!(read_all(b"ab\rcd", false, 4), Err(LineTooLong { line: 1 }));
    }

    #[test]
    fn a_csv_row_runs_on_inside_quotes() {
        // Short lines, but one quoted field spanning them: one row of 10 bytes.
        assert_eq!(
            read_all(b"a,b\n\"x\ny\nz\",w\n", true, 8),
            Err(LineTooLong { line: 2 })
        );
        assert!(read_all(b"a,b\n\"x\ny\nz\",w\n", true, 10).is_ok());
        // "" is a quote inside a quoted field; a quote inside an unquoted field is a character.
        assert!(read_all(b"\"a\"\"\nb\"\nab\"c\nd\n", true, 7).is_ok());
        assert_eq!(
            read_all(b"\"a\"\"\nb\"\nab\"c\nd\n", true, 6),
            Err(LineTooLong { line: 1 })
        );
    }

    #[test]
    fn an_endless_row_fails_after_the_limit_and_stays_failed() {
        let mut capped = Capped::new(std::io::repeat(0), true);
        let mut buffer = vec![0; 8192];
        let mut total = 0;
        let error = loop {
            match capped.read(&mut buffer) {
                Ok(n) => total += n,
                Err(error) => break error,
            }
            assert!(total <= MAX_LINE_BYTES, "read past the cap");
        };
        assert_eq!(LineTooLong::within(&error), Some(LineTooLong { line: 1 }));
        assert!(capped.read(&mut buffer).is_err());
    }
}
