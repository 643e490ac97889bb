//! JSON string escaping written straight into the body buffer, matching serde_json's output
//! (`"`, `\`, control characters escaped; everything else, Unicode included, passed through).

use std::io;

/// Writes `text` as a JSON string literal.
pub(crate) fn write_json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    escape_into(out, text.as_bytes());
    out.push(b'"');
}

/// Appends UTF-8 bytes with JSON string escaping (`"`, `\`, control characters); everything
/// else, including non-ASCII, passes through, as serde_json does.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{byte:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// An `io::Write` that JSON-escapes into a buffer and counts the characters written.
/// Escaping only touches ASCII bytes, so a character split across writes is safe.
pub(super) struct JsonEscaper<'a> {
    pub(super) out: &'a mut Vec<u8>,
    pub(super) chars: usize,
}

impl io::Write for JsonEscaper<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.chars += buf.iter().filter(|&&b| (b & 0xc0) != 0x80).count();
        escape_into(self.out, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
