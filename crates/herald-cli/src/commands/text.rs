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

/// `value` as pretty JSON on stdout (the shape the API answers); `command` names who failed.
pub(crate) fn json_out<T: serde::Serialize>(command: &str, value: &T) -> std::process::ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            out(&text);
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{command}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
