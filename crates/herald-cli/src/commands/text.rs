//! The commands' output: lines on stdout, and number formatting.

use std::io::Write;

/// Command output on stdout, one line at a time (logs go to stderr).
pub(crate) fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// `12345` as `12,345`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        let check = |n: u64, expected: &str| assert_eq!(thousands(n), expected);
        check(0, "0");
        check(999, "999");
        check(1_000, "1,000");
        check(10_000, "10,000");
        check(1_234_567, "1,234,567");
    }
}
