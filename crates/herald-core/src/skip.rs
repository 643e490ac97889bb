//! `SkipReason`: why the producer decided not to send to a user it considered. Each reason
//! becomes one `skipped` `DeliveryResult`. Users a segment filter leaves out are not
//! "considered" and get no result at all, so there is no `filtered` reason.

use crate::limits::LimitViolation;
use crate::result::ErrorInfo;

/// Why a user got a `skipped` result instead of a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// The PSID is missing, empty or whitespace: there is nobody to send to.
    #[error("the user has no messenger_id (PSID)")]
    BlankPsid,
    /// RESPONSE/UPDATE to a user whose last message is known to be 24 h old or more.
    #[error("the user last wrote more than 24 hours ago (outside the standard messaging window)")]
    OutsideWindow,
    /// The user opted out of this page's messages.
    #[error("the user opted out")]
    OptedOut,
    /// The rendered message breaks one or more of Meta's content limits.
    #[error("the rendered message breaks Meta's limits: {}", join(.0))]
    MessageLimits(Vec<LimitViolation>),
    /// The same external_id appeared earlier in this run.
    #[error("duplicate external_id in this run")]
    Duplicate,
    /// Liquid failed for this user (e.g. a filter got a value of the wrong type).
    #[error("the message could not be rendered for this user: {0}")]
    RenderError(String),
    /// The user already got the campaign's `frequency_cap` of messages from this page in its
    /// period (any campaign).
    #[error("the user already got {max} message(s) from this page in the last {per}")]
    FrequencyCap { max: u32, per: String },
}

impl SkipReason {
    /// Stable snake_case label for results and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::BlankPsid => "blank_psid",
            Self::OutsideWindow => "outside_window",
            Self::OptedOut => "opted_out",
            Self::MessageLimits(_) => "message_limits",
            Self::Duplicate => "duplicate",
            Self::RenderError(_) => "render_error",
            Self::FrequencyCap { .. } => "frequency_cap",
        }
    }

    /// A human sentence for the result's `error.message` (never a PSID or message text).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The `error` of the `skipped` result: no Graph code, no class, the reason in words
    /// prefixed with its label (`outside_window: ...`) so consumers can match on it.
    pub fn to_error_info(&self) -> ErrorInfo {
        ErrorInfo {
            code: None,
            subcode: None,
            class: None,
            message: format!("{}: {self}", self.as_str()),
            fbtrace_id: None,
        }
    }
}

fn join(violations: &[LimitViolation]) -> String {
    let parts: Vec<String> = violations
        .iter()
        .map(|v| format!("{} {}", v.path, v.message))
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable() {
        let check = |reason: SkipReason, label: &str| {
            assert_eq!(reason.as_str(), label);
            assert!(reason.to_error_info().message.starts_with(label));
        };
        check(SkipReason::BlankPsid, "blank_psid");
        check(
            SkipReason::FrequencyCap {
                max: 1,
                per: "24h".into(),
            },
            "frequency_cap",
        );
        check(SkipReason::OutsideWindow, "outside_window");
        check(SkipReason::OptedOut, "opted_out");
        check(SkipReason::MessageLimits(Vec::new()), "message_limits");
        check(SkipReason::Duplicate, "duplicate");
        check(SkipReason::RenderError("x".into()), "render_error");
    }

    #[test]
    fn limits_message_lists_paths() {
        let reason = SkipReason::MessageLimits(vec![LimitViolation {
            path: "message.text".into(),
            message: "is 2001 characters; Meta allows fewer than 2000 characters".into(),
        }]);
        assert_eq!(
            reason.message(),
            "the rendered message breaks Meta's limits: message.text is 2001 characters; \
             Meta allows fewer than 2000 characters"
        );
    }
}
