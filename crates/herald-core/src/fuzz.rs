//! Property tests: arbitrary and mutated input thrown at every parser of this crate that sees
//! outside data (the wire messages `SendJob`, `DeliveryResult` and `ControlMessage`, campaign
//! documents in TOML and JSON, signed refs). Each must answer with a value or a clear error,
//! never panic. CI runs proptest's default number of cases; `scripts/fuzz` runs many more.

use proptest::prelude::*;
use time::OffsetDateTime;

use crate::fuzzing::mutated;
use crate::signed_ref::RefKeys;
use crate::{Campaign, ControlAction, ControlMessage, DeliveryResult, Secret, SendJob, decode};

fn job() -> Vec<u8> {
    br#"{"v":1,"job_id":"r:u1","run_id":"r","campaign_id":"c","page_id":"1","external_id":"u1",
        "request":{"recipient":{"id":"2"},"messaging_type":"UPDATE","message":{"text":"hi"}},
        "rate_per_sec":10,"max_attempts":5,"not_after":"2026-12-01T10:00:00Z",
        "enqueued_at":"2026-12-01T09:00:00Z"}"#
        .to_vec()
}

fn result() -> Vec<u8> {
    br#"{"v":1,"job_id":"r:u1","run_id":"r","campaign_id":"c","external_id":"u1","page_id":"1",
        "status":"failed","message_id":null,"error":{"code":551,"subcode":null,"class":"user",
        "message":"unavailable","fbtrace_id":"x"},"attempts":2,"finished_at":"2026-12-01T09:00:00Z"}"#
        .to_vec()
}

fn wire() -> impl Strategy<Value = Vec<u8>> {
    let control =
        ControlMessage::for_page(ControlAction::HaltPage, "1", Some("why".into())).to_vec();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        mutated(job()),
        mutated(result()),
        mutated(control),
    ]
}

proptest! {
    #[test]
    fn wire_messages_decode_or_say_why(bytes in wire()) {
        for failure in [
            decode::<SendJob>(&bytes).err(),
            decode::<DeliveryResult>(&bytes).err(),
            ControlMessage::from_slice(&bytes).err().map(|error| error.to_string()),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(!failure.trim().is_empty());
        }
    }

    #[test]
    fn campaign_documents_parse_or_list_problems(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            mutated(crate::campaign::EXAMPLE_TOML.as_bytes().to_vec()),
        ]
    ) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(errors) = Campaign::from_toml(&text) {
            prop_assert!(!errors.to_string().trim().is_empty());
        }
        if let Err(errors) = Campaign::from_json(&text) {
            prop_assert!(!errors.to_string().trim().is_empty());
        }
    }

    #[test]
    fn any_ref_is_checked_without_panic(
        reference in "hr1\\.[a-z0-9]{0,4}\\.[0-9]{0,21}\\.[A-Za-z0-9_=-]{0,60}\\.[A-Za-z0-9_-]{0,40}|\\PC{0,120}"
    ) {
        let keys = RefKeys::parse(&Secret::new("k1=fuzz-secret-0123456789abcdefghijklmn"))
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let _ = keys.check("1000000001", &reference, OffsetDateTime::now_utc());
    }
}
