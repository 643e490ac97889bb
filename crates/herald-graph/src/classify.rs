//! The one mapping from what a send attempt observed to a `Verdict` (ARCHITECTURE.md, "Error
//! classes"; the table is docs/messenger-platform.md §3.2). Owns the decision only; carrying it out
//! (backoff, halting a page, results) belongs to the worker.

use std::time::Duration;

use herald_core::{ErrorClass, Verdict};

use crate::Usage;

/// How long to wait when another app owns the thread (handover) or the user is in a
/// Messenger-run flow: Meta says "retry later", on a scale of minutes.
pub(crate) const THREAD_OWNED_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// The two appsecret_proof configuration errors, both code 100 without a subcode
/// (docs/messenger-platform.md §2), told apart from other code-100 errors by their text only.
const APPSECRET_MESSAGES: [&str; 2] = [
    "api calls from the server require an appsecret_proof argument",
    "invalid appsecret_proof provided in the api argument",
];

/// What one failed attempt observed, reduced to what classification needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure<'a> {
    /// No HTTP response: connect, TLS or I/O error.
    Transport,
    /// The connect or request timeout fired.
    Timeout,
    /// An HTTP response whose body is not a Graph error (HTML, empty, other JSON).
    Http { status: u16 },
    /// A 2xx response without a `message_id`.
    MalformedSuccess,
    /// A Graph error body (docs/messenger-platform.md §3.1).
    Graph {
        status: u16,
        code: u32,
        subcode: Option<u32>,
        is_transient: Option<bool>,
        message: &'a str,
    },
}

/// Decides what happens after a failed attempt. `attempt` is 1-based and counts this one;
/// `usage` comes from the same response and supplies the wait for throttling errors.
pub(crate) fn classify(failure: &Failure<'_>, usage: Option<&Usage>, attempt: u32) -> Verdict {
    use ErrorClass::{DropUser, HaltPage, Invalid, Retry, SlowDown};

    let regain_access = usage.and_then(|usage| usage.regain_access);
    let (class, retry_after) = match *failure {
        Failure::Transport | Failure::Timeout => (Retry, None),
        Failure::Http { status: 429 } => (SlowDown, regain_access),
        // Without a Graph error we know nothing better: a proxy page, a 5xx, an empty body.
        // Bounded by the job's max_attempts, and a dead-lettered job can be replayed.
        Failure::Http { .. } => (Retry, None),
        // Graph answered 2xx, so the message was probably delivered: resending risks a duplicate.
        Failure::MalformedSuccess => (Invalid, None),
        Failure::Graph {
            status,
            code,
            subcode,
            is_transient,
            message,
        } => {
            // docs/messenger-platform.md §3.2, one row per code / subcode; §2 for the
            // appsecret_proof text.
            match (code, subcode) {
                (100, _) if is_appsecret_error(message) => (Invalid, None),
                // Batch "invalid JSON reply": may already be delivered, never resend blindly.
                (1, Some(1_357_046)) => (Invalid, None),
                // Codes 1 and 2 on a 5xx, or marked transient, are platform faults
                // (docs/messenger-platform.md §3.1): retried up to max_attempts. Halting the page
                // or dropping the user on a repeat would turn one Graph outage into a fleet-wide
                // halt.
                (1 | 2, _) if status >= 500 || is_transient == Some(true) => (Retry, None),
                // Unknown error, often a missing permission: once more, then stop the page.
                (1, _) => (if attempt <= 1 { Retry } else { HaltPage }, None),
                (2, Some(2_018_344)) => (Invalid, None),
                // Temporary, but a repeat for one user can mean the user blocked the page.
                (2, _) => (if attempt < 3 { Retry } else { DropUser }, None),
                (1200, _) => (if attempt <= 2 { Retry } else { Invalid }, None),
                (3, _) => (Invalid, None),
                (4, Some(2_018_354)) => (DropUser, None),
                (9, Some(2_018_352)) => (DropUser, None),
                (613, Some(2_018_338 | 1_893_016)) => (DropUser, None),
                // App, user, Pages, custom and Business Use Case limits (docs/messenger-platform.md
                // §3.2, §4.1).
                (4 | 17 | 32 | 341 | 613 | 80_000..=80_006 | 80_008 | 80_009 | 80_014, _) => {
                    (SlowDown, regain_access)
                }
                (
                    10,
                    Some(2_018_278 | 2_534_022 | 2_018_065 | 2_018_108 | 2_018_336 | 1_893_015),
                ) => (DropUser, None),
                // Permission denied, policy restriction (1893063) and any other subcode.
                (10, _) => (HaltPage, None),
                (100, Some(33 | 2_018_001)) => (DropUser, None),
                // URL fetch failure or video fetch timeout: may be the remote host, once more.
                (100, Some(2_018_008 | 2_018_294)) => {
                    (if attempt <= 1 { Retry } else { Invalid }, None)
                }
                (100, _) => (Invalid, None),
                (102 | 190, _) => (HaltPage, None),
                (200, Some(1_545_041)) => (DropUser, None),
                (200, _) => (HaltPage, None),
                (230 | 551, _) => (DropUser, None),
                (368 | 2022 | 10_904, _) => (HaltPage, None),
                (10_900 | 10_903, _) => (DropUser, None),
                (2_018_300 | 2_018_321, _) => (Retry, Some(THREAD_OWNED_RETRY_AFTER)),
                _ if is_transient == Some(true) || status >= 500 => (Retry, None),
                _ => (Invalid, None),
            }
        }
    };
    Verdict { class, retry_after }
}

/// True for the two appsecret_proof messages, compared case-insensitively.
fn is_appsecret_error(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    APPSECRET_MESSAGES
        .iter()
        .any(|known| message.contains(known))
}

#[cfg(test)]
mod tests {
    use super::*;

    use ErrorClass::{DropUser, HaltPage, Invalid, Retry, SlowDown};

    const REGAIN: Duration = Duration::from_secs(7 * 60);
    const USAGE: Usage = Usage {
        ratio: 1.2,
        regain_access: Some(REGAIN),
    };

    fn check(failure: Failure<'_>, attempt: u32, class: ErrorClass, retry_after: Option<Duration>) {
        let verdict = classify(&failure, Some(&USAGE), attempt);
        assert_eq!(
            verdict,
            Verdict { class, retry_after },
            "{failure:?} on attempt {attempt}"
        );
    }

    fn graph(code: u32, subcode: Option<u32>) -> Failure<'static> {
        graph_at(400, code, subcode)
    }

    fn graph_at(status: u16, code: u32, subcode: Option<u32>) -> Failure<'static> {
        Failure::Graph {
            status,
            code,
            subcode,
            is_transient: None,
            message: "x",
        }
    }

    /// (code, subcode, attempt, expected class, expected retry_after).
    type Row = (u32, Option<u32>, u32, ErrorClass, Option<Duration>);

    /// One row per code / subcode of docs/messenger-platform.md §3.2, in its order.
    #[rustfmt::skip]
    const GRAPH_TABLE: &[Row] = &[
        (1, Some(99), 1, Retry, None),
        (1, Some(99), 2, HaltPage, None),
        (1, None, 1, Retry, None),
        (1, Some(1_357_046), 1, Invalid, None),
        (2, None, 1, Retry, None),
        (2, None, 2, Retry, None),
        (2, None, 3, DropUser, None),
        (2, Some(2_018_344), 1, Invalid, None),
        (1200, None, 1, Retry, None),
        (1200, None, 2, Retry, None),
        (1200, None, 3, Invalid, None),
        (4, None, 1, SlowDown, Some(REGAIN)),
        (4, Some(2_018_354), 1, DropUser, None),
        (9, Some(2_018_352), 1, DropUser, None),
        (10, None, 1, HaltPage, None),
        (10, Some(2_018_278), 1, DropUser, None),
        (10, Some(2_534_022), 1, DropUser, None),
        (10, Some(2_018_065), 1, DropUser, None),
        (10, Some(2_018_108), 1, DropUser, None),
        (10, Some(1_893_015), 1, DropUser, None),
        (10, Some(1_404_170), 1, HaltPage, None),
        (10, Some(1_893_063), 1, HaltPage, None),
        (10, Some(2_018_336), 1, DropUser, None),
        (17, None, 1, SlowDown, Some(REGAIN)),
        (17, Some(2_446_079), 1, SlowDown, Some(REGAIN)),
        (32, None, 1, SlowDown, Some(REGAIN)),
        (100, None, 1, Invalid, None),
        (100, Some(33), 1, DropUser, None),
        (100, Some(2_018_001), 1, DropUser, None),
        (100, Some(2_018_008), 1, Retry, None),
        (100, Some(2_018_008), 2, Invalid, None),
        (100, Some(2_018_047), 1, Invalid, None),
        (100, Some(2_018_074), 1, Invalid, None),
        (100, Some(2_018_109), 1, Invalid, None),
        (100, Some(2_018_294), 1, Retry, None),
        (100, Some(2_018_294), 2, Invalid, None),
        (100, Some(2_018_014), 1, Invalid, None),
        (100, Some(2_018_164), 1, Invalid, None),
        (100, Some(2_018_032), 1, Invalid, None),
        (190, None, 1, HaltPage, None),
        (190, Some(458), 1, HaltPage, None),
        (190, Some(459), 1, HaltPage, None),
        (190, Some(460), 1, HaltPage, None),
        (190, Some(463), 1, HaltPage, None),
        (190, Some(464), 1, HaltPage, None),
        (190, Some(467), 1, HaltPage, None),
        (200, None, 1, HaltPage, None),
        (200, Some(2_018_028), 1, HaltPage, None),
        (200, Some(2_018_027), 1, HaltPage, None),
        (200, Some(2_018_021), 1, HaltPage, None),
        (200, Some(1_545_041), 1, DropUser, None),
        (230, None, 1, DropUser, None),
        (368, None, 1, HaltPage, None),
        (551, None, 1, DropUser, None),
        (551, Some(1_545_041), 1, DropUser, None),
        (613, None, 1, SlowDown, Some(REGAIN)),
        (613, Some(1996), 1, SlowDown, Some(REGAIN)),
        (613, Some(2_534_040), 1, SlowDown, Some(REGAIN)),
        (613, Some(2_018_338), 1, DropUser, None),
        (613, Some(1_893_016), 1, DropUser, None),
        (80_001, None, 1, SlowDown, Some(REGAIN)),
        (80_006, None, 1, SlowDown, Some(REGAIN)),
        (2_018_300, None, 1, Retry, Some(THREAD_OWNED_RETRY_AFTER)),
        (2_018_321, None, 1, Retry, Some(THREAD_OWNED_RETRY_AFTER)),
        (2022, None, 1, HaltPage, None),
        (10_900, None, 1, DropUser, None),
        (10_903, None, 1, DropUser, None),
        (10_904, None, 1, HaltPage, None),
        // "Also Graph-wide": 102 as 190, 3 capability, 341 app limit, 506 duplicate post.
        (102, None, 1, HaltPage, None),
        (3, None, 1, Invalid, None),
        (341, None, 1, SlowDown, Some(REGAIN)),
        (506, None, 1, Invalid, None),
    ];

    #[test]
    fn graph_codes_follow_the_reference_table() {
        for &(code, subcode, attempt, class, retry_after) in GRAPH_TABLE {
            check(graph(code, subcode), attempt, class, retry_after);
        }
    }

    #[test]
    fn appsecret_proof_errors_are_invalid_by_text() {
        // docs/messenger-platform.md §2: code 100, no subcode; told apart by text only,
        // case-insensitively, and still a configuration error should a subcode ever appear next to
        // that text.
        #[rustfmt::skip]
        let rows: &[(&str, Option<u32>)] = &[
            ("API calls from the server require an appsecret_proof argument", None),
            ("Invalid appsecret_proof provided in the API argument", None),
            ("(#100) INVALID APPSECRET_PROOF PROVIDED IN THE API ARGUMENT", None),
            ("Invalid appsecret_proof provided in the API argument", Some(33)),
        ];
        for &(message, subcode) in rows {
            let failure = Failure::Graph {
                status: 400,
                code: 100,
                subcode,
                is_transient: Some(true),
                message,
            };
            check(failure, 1, Invalid, None);
        }
    }

    #[test]
    fn unknown_codes_and_non_graph_answers() {
        let unknown = |status, is_transient| Failure::Graph {
            status,
            code: 999_999,
            subcode: None,
            is_transient,
            message: "x",
        };
        check(unknown(400, None), 1, Invalid, None);
        check(unknown(400, Some(false)), 1, Invalid, None);
        check(unknown(400, Some(true)), 1, Retry, None);
        check(unknown(500, None), 1, Retry, None);
        check(unknown(503, Some(false)), 1, Retry, None);
        // HTTP status never overrides a known code.
        check(graph_at(500, 190, Some(463)), 1, HaltPage, None);
        check(graph_at(200, 100, None), 1, Invalid, None);
        check(graph_at(503, 2, None), 1, Retry, None);
        // Codes 1 and 2 as platform faults (5xx or transient) stay retries on every attempt.
        check(graph_at(500, 1, None), 4, Retry, None);
        check(graph_at(503, 2, None), 4, Retry, None);
        let transient = |code| Failure::Graph {
            status: 400,
            code,
            subcode: None,
            is_transient: Some(true),
            message: "x",
        };
        check(transient(1), 3, Retry, None);
        check(transient(2), 3, Retry, None);
        check(graph_at(400, 1, None), 2, HaltPage, None);
        check(graph_at(400, 2, None), 3, DropUser, None);

        check(Failure::Transport, 1, Retry, None);
        check(Failure::Transport, 9, Retry, None);
        check(Failure::Timeout, 1, Retry, None);
        check(Failure::Http { status: 502 }, 1, Retry, None);
        check(Failure::Http { status: 404 }, 1, Retry, None);
        check(Failure::Http { status: 429 }, 1, SlowDown, Some(REGAIN));
        check(Failure::MalformedSuccess, 1, Invalid, None);
    }

    #[test]
    fn throttling_without_usage_has_no_floor() {
        let verdict = classify(&graph(613, None), None, 1);
        assert_eq!(
            verdict,
            Verdict {
                class: SlowDown,
                retry_after: None
            }
        );
    }
}
