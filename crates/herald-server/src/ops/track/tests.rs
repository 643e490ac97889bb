//! `track`'s reading, one table row per case: each object on its own, values as strings (arrays
//! and objects as JSON), and the request as a whole.

use serde_json::json;

use super::request::{ActionKind, action_of, arrays_of, attribute_of};
use super::*;
use crate::ops::ErrorKind;

#[test]
fn each_attribute_object_is_checked_on_its_own() {
    let check = |item: Value, expected: Result<(&str, Option<&str>), (&str, &str)>| match (
        attribute_of(&item, Some("1000000001")),
        expected,
    ) {
        (Ok((record, _)), Ok((id, psid))) => {
            assert_eq!(record.external_id, id);
            assert_eq!(record.messenger_id.as_deref(), psid);
        }
        (Err((field, message)), Err((want_field, want_message))) => {
            assert_eq!(field.as_deref().unwrap_or(""), want_field, "{item}");
            assert!(message.contains(want_message), "{item}: {message}");
        }
        (got, _) => panic!("{item}: unexpected {:?}", got.map(|(r, _)| r)),
    };
    check(
        json!({"external_id": "u1", "messenger_id": "123", "n": 3, "vip": true}),
        Ok(("u1", Some("123"))),
    );
    check(json!({"external_id": " u2 ", "psid": ""}), Ok(("u2", None)));
    check(
        json!({"external_id": "u3", "email": "a@b.c", "phone": "+5511999", "tags": ["a"]}),
        Ok(("u3", None)),
    );
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
        json!({"external_id": "u", "_update_existing_only": "yes"}),
        Err(("_update_existing_only", "true or false")),
    );
    check(
        json!({"external_id": "u", "_merge_objects": true}),
        Err(("_merge_objects", "unknown Braze option")),
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
        "colors": ["red", "blue"], "prefs": {"color": "green"},
        "_update_existing_only": true, "last_inbound_at": "2026-11-21T09:30:00Z"});
    let (record, existing_only) = attribute_of(&item, Some("1000000001")).expect("valid");
    assert!(existing_only);
    let attrs: Vec<_> = record
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        attrs,
        [
            ("colors", r#"["red","blue"]"#),
            ("n", "3.5"),
            ("name", "Zoë"),
            ("prefs", r#"{"color":"green"}"#),
            ("vip", "false")
        ]
    );
    assert_eq!(record.page_id, None, "no PSID, no identity to link");
    assert!(record.last_inbound_at.is_some());
    let with_psid = json!({"external_id": "u1", "messenger_id": "42"});
    let (record, _) = attribute_of(&with_psid, Some("1000000001")).expect("valid");
    assert_eq!(record.page_id.as_deref(), Some("1000000001"));
}

#[test]
fn events_and_purchases_need_who_what_and_when() {
    let event = json!({"external_id": "u1", "app_id": "x", "name": "added_to_cart",
        "time": "2026-12-01T10:00:00Z", "properties": {"sku": "A1"}});
    let action = action_of(&event, "name").expect("valid");
    assert_eq!(
        action.kind,
        ActionKind::Event {
            name: "added_to_cart".into()
        }
    );
    let purchase = json!({"external_id": "u1", "product_id": "sku-1", "currency": "USD",
        "price": 12.5, "quantity": 1, "time": "2026-12-01T10:00:00Z"});
    assert!(action_of(&purchase, "product_id").is_ok());
    for (item, field) in [
        (
            json!({"name": "x", "time": "2026-12-01T10:00:00Z"}),
            "external_id",
        ),
        (
            json!({"external_id": "u", "time": "2026-12-01T10:00:00Z"}),
            "name",
        ),
        (json!({"external_id": "u", "name": "x"}), "time"),
        (
            json!({"external_id": "u", "name": "x", "time": "soon"}),
            "time",
        ),
        (
            json!({"external_id": "u", "name": " ", "time": "2026-12-01T10:00:00Z"}),
            "name",
        ),
    ] {
        let (got, _) = action_of(&item, "name").expect_err("refused");
        assert_eq!(got.as_deref(), Some(field), "{item}");
    }
}

#[test]
fn the_request_as_a_whole_needs_one_known_array() {
    let refused = |request: Value, path: &str| {
        let error = arrays_of(&request).expect_err("refused");
        assert_eq!(error.problems()[0].path, path, "{request}");
        assert_eq!(error.kind(), ErrorKind::Usage);
    };
    refused(json!([]), "");
    refused(json!({}), "attributes");
    refused(json!({"attributes": []}), "attributes");
    refused(json!({"attributes": {}}), "attributes");
    refused(json!({"attributes": [{}], "other": 1}), "other");
    let too_many = vec![json!({"external_id": "u"}); MAX_TRACK_ITEMS + 1];
    refused(json!({ "attributes": too_many }), "attributes");
    let request = json!({"events": [{}], "attributes": [{}, {}]});
    let arrays = arrays_of(&request).expect("ok");
    let names: Vec<_> = arrays
        .iter()
        .map(|(name, items)| (*name, items.len()))
        .collect();
    assert_eq!(
        names,
        [("attributes", 2), ("events", 1)],
        "attributes first"
    );
}
