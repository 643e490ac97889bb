//! `track`'s decisions, one table row per case: each attribute object on its own, values as
//! strings, and the request as a whole.

use serde_json::json;

use super::*;

#[test]
fn each_object_is_checked_on_its_own() {
    let check = |item: Value, expected: Result<(&str, Option<&str>), (&str, &str)>| match (
        record_of(&item, Some("1000000001")),
        expected,
    ) {
        (Ok(record), Ok((id, psid))) => {
            assert_eq!(record.external_id, id);
            assert_eq!(record.messenger_id.as_deref(), psid);
        }
        (Err((field, message)), Err((want_field, want_message))) => {
            assert_eq!(field.as_deref().unwrap_or(""), want_field, "{item}");
            assert!(message.contains(want_message), "{item}: {message}");
        }
        (got, _) => panic!("{item}: unexpected {got:?}"),
    };
    check(
        json!({"external_id": "u1", "messenger_id": "123", "n": 3, "vip": true}),
        Ok(("u1", Some("123"))),
    );
    check(json!({"external_id": " u2 ", "psid": ""}), Ok(("u2", None)));
    check(
        json!({"messenger_id": "123"}),
        Err(("external_id", "required")),
    );
    check(json!({"external_id": 7}), Err(("external_id", "string")));
    check(json!({"external_id": " "}), Err(("external_id", "blank")));
    check(
        json!({"external_id": "u", "messenger_id": "abc"}),
        Err(("messenger_id", "digits")),
    );
    check(
        json!({"external_id": "u", "last_inbound_at": "yesterday"}),
        Err(("last_inbound_at", "RFC 3339")),
    );
    check(
        json!({"external_id": "u", "tier": null}),
        Err(("tier", "null is not supported")),
    );
    check(
        json!({"external_id": "u", "tags": ["a"]}),
        Err(("tags", "nested")),
    );
    check(
        json!({"external_id": "u", "_update_existing_only": true}),
        Err(("_update_existing_only", "not supported")),
    );
    check(
        json!({"user_alias": {"alias_name": "a"}}),
        Err(("user_alias", "external_id")),
    );
    check(json!("u1"), Err(("", "JSON object")));
    check(
        json!({"external_id": "a\u{0}b"}),
        Err(("external_id", "control character")),
    );
    check(
        json!({"external_id": "x".repeat(257)}),
        Err(("external_id", "at most 256 bytes")),
    );
    check(
        json!({"external_id": "u", "psid": "1".repeat(300)}),
        Err(("psid", "at most 256 bytes")),
    );
}

#[test]
fn values_become_strings_and_the_page_only_comes_with_a_psid() {
    let item = json!({"external_id": "u1", "n": 3.5, "vip": false, "name": "Zoë",
        "last_inbound_at": "2026-11-21T09:30:00Z"});
    let record = record_of(&item, Some("1000000001")).expect("valid");
    let attrs: Vec<_> = record
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(attrs, [("n", "3.5"), ("name", "Zoë"), ("vip", "false")]);
    assert_eq!(record.page_id, None, "no PSID, no identity to link");
    assert!(record.last_inbound_at.is_some());
    let with_psid = json!({"external_id": "u1", "messenger_id": "42"});
    let record = record_of(&with_psid, Some("1000000001")).expect("valid");
    assert_eq!(record.page_id.as_deref(), Some("1000000001"));
}

#[test]
fn the_request_as_a_whole_must_be_attributes() {
    let refused = |request: Value, path: &str| {
        let error = attributes_of(&request).expect_err("refused");
        assert_eq!(error.problems()[0].path, path, "{request}");
        assert_eq!(error.kind(), ErrorKind::Usage);
    };
    refused(json!([]), "");
    refused(json!({}), "attributes");
    refused(json!({"attributes": []}), "attributes");
    refused(json!({"attributes": {}}), "attributes");
    refused(json!({"attributes": [{}], "events": []}), "events");
    refused(json!({"attributes": [{}], "other": 1}), "other");
    let too_many = vec![json!({"external_id": "u"}); MAX_TRACK_ITEMS + 1];
    refused(json!({ "attributes": too_many }), "attributes");
    assert_eq!(
        attributes_of(&json!({"attributes": [{}, {}]}))
            .expect("ok")
            .len(),
        2
    );
}
