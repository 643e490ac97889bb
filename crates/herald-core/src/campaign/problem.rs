//! `Problem` and `CampaignErrors`: everything wrong with a campaign document, listed at once,
//! each with its field path and, where the format gives one, its line and column. The exit code
//! follows sysexits: 64 (EX_USAGE) when the document's shape is wrong, 65 (EX_DATAERR) when
//! only its values break rules.

use std::fmt;

/// Whether a problem is about the document's shape or about a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The shape is wrong: syntax, unknown keys, wrong types, missing required fields.
    Usage,
    /// A value of the right type breaks a rule: bad id, retired tag, bad duration, Liquid
    /// syntax, Meta's content limits.
    Data,
}

/// One thing wrong with a campaign document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path, e.g. `delivery.max_attempts`, `segment.filter[1].op`,
    /// `message.quick_replies[3].title`; empty for the document as a whole.
    pub path: String,
    /// 1-based line and column (in characters) in the TOML source; `None` for JSON documents
    /// after parsing, and for required fields that are absent from the top level.
    pub line_col: Option<(usize, usize)>,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
    /// Shape or value.
    pub kind: ProblemKind,
}

/// Every problem found in a campaign document; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignErrors {
    problems: Vec<Problem>,
}

/// `EX_USAGE` from sysexits.h.
pub const EXIT_USAGE: u8 = 64;
/// `EX_DATAERR` from sysexits.h.
pub const EXIT_DATA: u8 = 65;

impl CampaignErrors {
    /// Wraps a non-empty list, ordered by position (problems without one keep their order,
    /// after those with one).
    pub(crate) fn new(mut problems: Vec<Problem>) -> Self {
        debug_assert!(!problems.is_empty());
        problems.sort_by_key(|p| p.line_col.map_or((usize::MAX, usize::MAX), |lc| lc));
        Self { problems }
    }

    /// The problems, in document order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Consumes the list.
    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// 64 if any problem is about the document's shape, else 65.
    pub fn exit_code(&self) -> u8 {
        if self.problems.iter().any(|p| p.kind == ProblemKind::Usage) {
            EXIT_USAGE
        } else {
            EXIT_DATA
        }
    }
}

impl fmt::Display for Problem {
    /// `3:14: delivery.max_attempts: must be between 1 and 20, got 50`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.line_col {
            write!(f, "{line}:{column}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Display for CampaignErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CampaignErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(path: &str, line_col: Option<(usize, usize)>, kind: ProblemKind) -> Problem {
        Problem {
            path: path.into(),
            line_col,
            message: "bad".into(),
            kind,
        }
    }

    #[test]
    fn exit_code_prefers_usage() {
        let data = CampaignErrors::new(vec![problem("id", None, ProblemKind::Data)]);
        assert_eq!(data.exit_code(), 65);
        let mixed = CampaignErrors::new(vec![
            problem("id", None, ProblemKind::Data),
            problem("x", Some((1, 1)), ProblemKind::Usage),
        ]);
        assert_eq!(mixed.exit_code(), 64);
    }

    #[test]
    fn displays_one_line_each_in_document_order() {
        let errors = CampaignErrors::new(vec![
            problem("id", None, ProblemKind::Data),
            problem("delivery.window", Some((9, 10)), ProblemKind::Data),
            problem("", Some((2, 1)), ProblemKind::Usage),
        ]);
        assert_eq!(
            errors.to_string(),
            "2:1: bad\n9:10: delivery.window: bad\nid: bad"
        );
    }
}
