//! The commands' output: lines on stdout, and number formatting.

use std::io::Write;

/// `12345` as `12,345` (the launch check's formatting, shared).
pub(crate) use herald_producer::launch::thousands;

/// Command output on stdout, one line at a time (logs go to stderr).
pub(crate) fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
