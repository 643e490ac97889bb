//! Property tests: arbitrary and mutated Graph answers (any status, any body) and usage headers.
//! Each becomes a `Sent`, a classified `SendError` or no usage, never a panic. CI runs
//! proptest's default number of cases; `scripts/fuzz` runs many more.

use herald_core::fuzzing::mutated;
use proptest::prelude::*;

use crate::response::interpret;
use crate::usage::Usage;

const ERROR: &[u8] =
    br#"{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.",
 "type":"OAuthException","code":613,"error_subcode":2018022,"is_transient":true,
 "error_user_msg":"x","fbtrace_id":"AbC"}}"#;
const SENT: &[u8] =
    br#"{"recipient_id":"1008372609250235","message_id":"m_AG5Hz2Uq7tuwNEhXfYYKj8"}"#;
const USAGE: &str = r#"{"1000000001":[{"type":"messenger","call_count":28,"total_cputime":25,
 "total_time":25,"estimated_time_to_regain_access":12}]}"#;

proptest! {
    #[test]
    fn graph_answers_are_classified(
        status in prop_oneof![Just(200_u16), Just(400), Just(403), Just(500), 100_u16..600],
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            mutated(ERROR.to_vec()),
            mutated(SENT.to_vec()),
        ],
        attempt in 1_u32..10,
    ) {
        let _ = interpret(status, None, &body, attempt, &["secret-token"]);
    }

    #[test]
    fn usage_headers_parse_or_are_absent(
        buc in prop_oneof![
            "\\PC{0,120}",
            mutated(USAGE.as_bytes().to_vec()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
        app in "\\PC{0,60}",
    ) {
        let _ = Usage::parse(Some(&buc), Some(&app), None);
    }
}
