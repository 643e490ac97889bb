//! Property tests: arbitrary and mutated input thrown at the parsers of `herald serve` that see
//! outside data: webhook bodies (the ingest's `parse`), `X-Hub-Signature-256` headers, and
//! delivery results off the broker. Each answers with events, a value or a clear reason, never a
//! panic. CI runs proptest's default number of cases; `scripts/fuzz` runs many more.

use herald_core::fuzzing::mutated;
use proptest::prelude::*;

use crate::ingest::parse_for_fuzzing as parse;
use crate::results::parse_result;
use crate::webhook::parse_signature_for_fuzzing as parse_signature;

const WEBHOOK: &[u8] = br#"{"object":"page","entry":[{"id":"1","time":1790000000000,"messaging":[
 {"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1790000000000,
  "message":{"mid":"m1","text":"hi","referral":{"ref":"hr1.k.1.dQ.AA","source":"SHORTLINK"}}},
 {"sender":{"id":"2"},"recipient":{"id":"1"},"delivery":{"watermark":1790000000000,"mids":["m1"]}},
 {"sender":{"id":"2"},"recipient":{"id":"1"},"read":{"watermark":1790000000000}},
 {"sender":{"id":"2"},"recipient":{"id":"1"},"optin":{"type":"notification_messages",
  "notification_messages_status":"STOP_NOTIFICATIONS"}},
 {"recipient":{"id":"1"},"messaging_policy_enforcement":{"action":"block","reason":"x"}}]}]}"#;

const RESULT: &[u8] = br#"{"v":1,"job_id":"r:u1","run_id":"r","campaign_id":"c","external_id":"u1",
 "page_id":"1","status":"sent","message_id":"m","error":null,"attempts":1,
 "finished_at":"2026-11-21T09:00:00Z"}"#;

proptest! {
    #[test]
    fn webhook_bodies_become_events_or_poison_with_a_reason(
        body in prop_oneof![prop::collection::vec(any::<u8>(), 0..400), mutated(WEBHOOK.to_vec())]
    ) {
        if let Err(reason) = parse(&body, 1_790_000_000_000, 7 * 24 * 3600 * 1000) {
            prop_assert!(!reason.trim().is_empty());
        }
    }

    #[test]
    fn results_off_the_broker_parse_or_say_why(
        body in prop_oneof![prop::collection::vec(any::<u8>(), 0..300), mutated(RESULT.to_vec())]
    ) {
        if let Err(reason) = parse_result(&body) {
            prop_assert!(!reason.trim().is_empty());
        }
    }

    #[test]
    fn signature_headers_never_panic(
        header in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..100),
            "sha256=[0-9a-fA-F]{0,70}".prop_map(String::into_bytes),
        ]
    ) {
        let _ = parse_signature(Some(&header));
    }
}
