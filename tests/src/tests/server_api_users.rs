//! Getting users in over the admin API: `POST /users/import` with a CSV and a JSONL body (a
//! malformed row is reported by its line, the rest imported), and `POST /users/track` in
//! Braze's shape (good objects stored, bad ones reported by index). Ids are checked on the way
//! in by both: empty, over 256 bytes or holding a control character is refused per row or
//! object. The rig is `server_api.rs`.

use serde_json::{Value, json};

use super::server_api_rig::{ApiServer, PAGE};
use super::store::users;

#[tokio::test]
async fn users_import_takes_csv_and_jsonl_and_reports_malformed_rows_by_line() {
    let Some(server) = ApiServer::start("test-api-import").await else {
        return;
    };
    let csv = "external_id,messenger_id,first_name,last_inbound_at\n\
               u1,101,Ana,2026-11-21T09:30:00Z\n\
               ,102,Nobody,\n\
               u3,103,Cy,\n\
               u4,104,Too,Many,Fields\n\
               u5,105,\"Zoë, the second\",yesterday\n\
               \n\
               u6,,NoPsid,\n";
    let reply = server.post("/users/import", "text/csv", csv).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        (
            reply.json["rows"].clone(),
            reply.json["imported"].clone(),
            reply.json["malformed"].clone()
        ),
        (json!(6), json!(3), json!(3)),
        "{}",
        reply.text
    );
    let lines: Vec<(u64, String)> = reply.json["malformed_rows"]
        .as_array()
        .expect("malformed_rows")
        .iter()
        .map(|p| {
            let line = p["line"].as_u64().expect("line");
            (line, p["message"].as_str().expect("message").to_owned())
        })
        .collect();
    assert_eq!(lines.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [3, 5, 6]);
    assert!(lines[0].1.contains("external_id"), "{lines:?}");
    assert!(lines[2].1.contains("RFC 3339"), "{lines:?}");
    assert!(
        !reply.text.contains("Nobody") && !reply.text.contains("Zoë"),
        "rows are never echoed: {}",
        reply.text
    );

    let jsonl = "{\"external_id\": \"j1\", \"psid\": \"201\", \"tier\": 3}\n\
                 not json at all\n\
                 \n\
                 {\"external_id\": \"u1\", \"tier\": \"gold\"}\n\
                 [1, 2]\n";
    let reply = server
        .post("/users/import", "application/x-ndjson", jsonl)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["imported"], 2, "{}", reply.text);
    let lines: Vec<u64> = reply.json["malformed_rows"]
        .as_array()
        .expect("malformed_rows")
        .iter()
        .filter_map(|p| p["line"].as_u64())
        .collect();
    assert_eq!(lines, [2, 5], "{}", reply.text);

    let stored = users(&server.store, PAGE).await;
    let ids: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(ids, ["j1", "u1", "u3", "u6"]);
    let ana = &stored["u1"];
    assert_eq!(ana.messenger_id.as_deref(), Some("101"));
    assert_eq!(ana.attributes["first_name"], "Ana");
    assert_eq!(
        ana.attributes["tier"], "gold",
        "a later import merges attributes"
    );
    assert!(ana.last_inbound_at.is_some());
    assert_eq!(
        stored["j1"].messenger_id.as_deref(),
        Some("201"),
        "psid alias"
    );

    // ?format= overrides the Content-Type; page_id links identities.
    let reply = server
        .post(
            &format!("/users/import?format=jsonl&page_id={PAGE}"),
            "text/plain",
            "{\"external_id\": \"p1\", \"messenger_id\": \"301\"}\n",
        )
        .await;
    assert_eq!(reply.json["imported"], 1, "{}", reply.text);
    // A user with a Messenger identity on the page streams with `opted_out`.
    let stored = users(&server.store, PAGE).await;
    assert_eq!(
        stored["p1"].attributes.get("opted_out").map(String::as_str),
        Some("false"),
        "the identity (page, PSID) was linked"
    );
    assert_eq!(
        stored["u1"].attributes.get("opted_out"),
        None,
        "no page, no identity"
    );

    // Refusals: what is wrong is said, nothing is written.
    let refusals = [
        ("/users/import", "text/plain", "x", 415),
        ("/users/import?format=xml", "text/csv", "x", 400),
        (
            "/users/import?page_id=abc",
            "text/csv",
            "external_id,psid\n",
            422,
        ),
        (
            "/users/import?color=red",
            "text/csv",
            "external_id,psid\n",
            400,
        ),
        ("/users/import", "text/csv", "name,psid\nx,1\n", 422),
    ];
    for (path, content_type, body, status) in refusals {
        let reply = server.post(path, content_type, body).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text);
        assert!(reply.json["error"].is_string(), "{path}: {}", reply.text);
    }
    // Over the server's import limit (64 KiB in this rig): 413, the rows before it are kept.
    let mut big = String::from("external_id,messenger_id\n");
    for i in 0..10_000 {
        big.push_str(&format!("big{i},{}\n", 500_000 + i));
    }
    let reply = server.post("/users/import", "text/csv", &big).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert!(
        reply.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("65536"))
    );
    server.stop().await;
}

#[tokio::test]
async fn users_track_stores_the_good_objects_and_reports_the_bad_ones() {
    let Some(server) = ApiServer::start("test-api-track").await else {
        return;
    };
    let request = json!({"attributes": [
        {"external_id": "t1", "messenger_id": "401", "first_name": "Ana", "visits": 3,
         "vip": true},
        {"messenger_id": "402"},
        {"external_id": "t3", "messenger_id": "not-a-psid"},
        {"external_id": "t4", "tags": ["a", "b"]},
        {"external_id": "t5", "last_inbound_at": "2026-11-21T09:30:00Z"},
        "t6",
    ]});
    let reply = server.post_json("/users/track", &request).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["message"], "partial");
    assert_eq!(reply.json["attributes_processed"], 3);
    let errors: Vec<(u64, &str)> = reply.json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            assert_eq!(e["input_array"], "attributes");
            (
                e["index"].as_u64().expect("index"),
                e["path"].as_str().expect("path"),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (1, "attributes[1].external_id"),
            (2, "attributes[2].messenger_id"),
            (5, "attributes[5]"),
        ]
    );
    let stored = users(&server.store, PAGE).await;
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["t1", "t4", "t5"]);
    assert_eq!(stored["t4"].attributes["tags"], r#"["a","b"]"#);
    let ana = &stored["t1"];
    assert_eq!(ana.messenger_id.as_deref(), Some("401"));
    assert_eq!(
        (
            ana.attributes["visits"].as_str(),
            ana.attributes["vip"].as_str()
        ),
        ("3", "true")
    );

    // A second call merges; every object refused is 422 with the same report shape.
    let more = json!({"attributes": [{"external_id": "t1", "tier": "gold"}]});
    assert_eq!(
        server.post_json("/users/track", &more).await.json["message"],
        "success"
    );
    let stored = users(&server.store, PAGE).await;
    assert_eq!(stored["t1"].attributes["first_name"], "Ana");
    assert_eq!(stored["t1"].attributes["tier"], "gold");
    let none = json!({"attributes": [{"external_id": ""}, {"external_id": "x", "n": null}]});
    let reply = server.post_json("/users/track", &none).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.json["message"], "failed");
    assert_eq!(reply.json["errors"].as_array().map(Vec::len), Some(2));

    // The request as a whole: a JSON error with what is wrong.
    let cases: [(&str, Value, u16, &str); 3] = [
        (
            "nothing",
            json!({"attributes": [], "events": []}),
            422,
            "attributes",
        ),
        ("empty", json!({"attributes": []}), 422, "attributes"),
        ("missing", json!({"users": []}), 422, "users"),
    ];
    for (name, body, status, path) in cases {
        let reply = server.post_json("/users/track", &body).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.text);
        assert_eq!(
            reply.json["problems"][0]["path"], path,
            "{name}: {}",
            reply.text
        );
    }
    let broken = server
        .post("/users/track", "application/json", "{\"attributes\": [")
        .await;
    assert_eq!(broken.status, 400, "{}", broken.text);
    assert!(broken.text.contains("line 1"), "{}", broken.text);
    let huge = "x".repeat(9 * 1024 * 1024);
    let reply = server.post("/users/track", "application/json", &huge).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert!(reply.json["error"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn ids_are_checked_where_they_enter_the_store() {
    let Some(server) = ApiServer::start("test-api-ids").await else {
        return;
    };
    let long = "x".repeat(herald_core::MAX_ID_BYTES + 1);
    let csv = format!(
        "external_id,messenger_id\n\
         ok1,301\n\
         \"nul\u{0}id\",302\n\
         {long},303\n\
         bell,\"30\u{7}4\"\n\
         ok2,305\n"
    );
    let reply = server
        .post(&format!("/users/import?page_id={PAGE}"), "text/csv", &csv)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["imported"], 2, "{}", reply.text);
    let problems: Vec<(u64, String)> = reply.json["malformed_rows"]
        .as_array()
        .expect("malformed_rows")
        .iter()
        .map(|p| {
            let line = p["line"].as_u64().expect("line");
            (line, p["message"].as_str().expect("message").to_owned())
        })
        .collect();
    assert_eq!(
        problems.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(problems[0].1.contains("control character"), "{problems:?}");
    assert!(problems[1].1.contains("at most 256 bytes"), "{problems:?}");
    assert!(problems[2].1.starts_with("messenger_id"), "{problems:?}");
    assert!(!reply.text.contains(&long), "ids are never echoed");

    let request = json!({"attributes": [
        {"external_id": "nul\u{0}id", "messenger_id": "401"},
        {"external_id": long, "messenger_id": "402"},
        {"external_id": "ok3", "messenger_id": "1".repeat(300)},
        {"external_id": "line\nbreak"},
    ]});
    let reply = server
        .post_json(&format!("/users/track?page_id={PAGE}"), &request)
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.json["attributes_processed"], 0, "{}", reply.text);
    let errors: Vec<(&str, &str)> = reply.json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["path"].as_str().expect("path"),
                e["message"].as_str().expect("message"),
            )
        })
        .collect();
    assert_eq!(
        errors.iter().map(|(path, _)| *path).collect::<Vec<_>>(),
        [
            "attributes[0].external_id",
            "attributes[1].external_id",
            "attributes[2].messenger_id",
            "attributes[3].external_id"
        ]
    );
    assert!(errors[0].1.contains("control character"), "{errors:?}");
    assert!(errors[1].1.contains("at most 256 bytes"), "{errors:?}");
    assert!(errors[2].1.contains("at most 256 bytes"), "{errors:?}");
    let stored = users(&server.store, PAGE).await;
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["ok1", "ok2"]);

    server.stop().await;
}

/// A request as Braze's client libraries build it (attributes with standard and nested values,
/// `_update_existing_only`, events and purchases with their extra fields), through the API:
/// stored, counted, and usable in a store campaign's filters and Liquid, as the API's dry run
/// shows.
#[tokio::test]
async fn a_braze_request_with_events_and_purchases_feeds_filters_and_liquid() {
    let Some(server) = ApiServer::start("test-api-braze").await else {
        return;
    };
    let ago = |days: i64| {
        (time::OffsetDateTime::now_utc() - time::Duration::days(days))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    };
    let (one, two, three, sixty) = (ago(1), ago(2), ago(3), ago(60));
    let request = json!({
        "attributes": [
            {"external_id": "b1", "messenger_id": "501", "email": "ana@example.com",
             "phone": "+5511999990000", "first_name": "Ana", "last_name": "Lima",
             "dob": "1990-04-01", "country": "BR", "language": "pt",
             "time_zone": "America/Sao_Paulo", "colors": ["red", "blue"],
             "prefs": {"color": "green"}, "_update_existing_only": false},
            {"external_id": "b2", "messenger_id": "502", "first_name": "Bo",
             "colors": ["blue"], "prefs": {"color": "black"}},
            {"external_id": "ghost", "first_name": "Nobody", "_update_existing_only": true},
        ],
        "events": [
            {"external_id": "b1", "app_id": "app", "name": "added_to_cart", "time": two,
             "properties": {"sku": "A1"}},
            {"external_id": "b1", "name": "added_to_cart", "time": one},
        ],
        "purchases": [
            {"external_id": "b1", "app_id": "app", "product_id": "sku-1", "currency": "USD",
             "price": 12.5, "quantity": 1, "time": three, "properties": {"gift": false}},
            {"external_id": "b2", "product_id": "sku-2", "currency": "USD", "price": 5,
             "time": sixty},
        ],
    });
    let reply = server
        .post_json(&format!("/users/track?page_id={PAGE}"), &request)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["message"], "partial", "{}", reply.text);
    assert_eq!(
        (
            &reply.json["attributes_processed"],
            &reply.json["events_processed"],
            &reply.json["purchases_processed"]
        ),
        (&json!(2), &json!(2), &json!(2))
    );
    assert_eq!(
        reply.json["errors"][0]["path"],
        "attributes[2]._update_existing_only"
    );
    let stored = users(&server.store, PAGE).await;
    assert!(
        !stored.contains_key("ghost"),
        "an update-only object created its user"
    );
    let ana = &stored["b1"].attributes;
    assert_eq!(ana["email"], "ana@example.com");
    assert_eq!(ana["time_zone"], "America/Sao_Paulo");
    assert_eq!(ana["events.added_to_cart.count"], "2");
    assert_eq!(ana["events.added_to_cart.last_at"], one);
    assert_eq!(ana["purchases.count"], "1");
    assert_eq!(ana["purchases.sku-1.last_at"], three);

    // Bought within 30 days and likes red: Ana only, greeted in her colour.
    let campaign = json!({
        "id": "braze-filter", "page_id": PAGE, "messaging_type": "UPDATE",
        "message": {"text": "Hi {{ first_name }}, {{ prefs.color }} it is"},
        "segment": {"source": "store", "match": "all", "filter": [
            {"attribute": "purchases.last_at", "op": "within", "value": "30d"},
            {"attribute": "colors", "op": "contains", "value": "red"},
        ]},
        "delivery": {"window": "off"},
    });
    let dry = server
        .post_json("/campaigns/runs?dry_run=true", &campaign)
        .await;
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert_eq!(dry.json["jobs"], 1, "{}", dry.text);
    let sample = dry.json["samples"][0].as_str().expect("a sample");
    assert!(sample.contains("Hi Ana, green it is"), "{sample}");
    server.stop().await;
}
