//! The running server against its OpenAPI document (`crates/herald-server/openapi.json`):
//! every documented path and method is served and every served route is documented (the admin
//! API's router is built from the table `serve::routes()` reads; other methods on a documented
//! path are 405), and every answer of a battery of calls (successes and refusals) has a
//! documented status, media type and a body that validates against the documented schema.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_amqp::Headers;
use herald_server::api::OPENAPI_JSON;
use herald_server::serve;
use serde_json::{Value, json};

use super::server_api_rig::{ApiServer, Auth, CAMPAIGN, PAGE, Reply};
use crate::eventually;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

pub(crate) fn document() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

/// Follows a `#/components/...` reference.
fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node["$ref"].as_str() {
        Some(pointer) => {
            let target = doc
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {pointer}"));
            resolve(doc, target)
        }
        None => node,
    }
}

/// Asserts that `reply` is a documented answer of `method path` and its body fits the schema.
pub(crate) fn conform(doc: &Value, method: &str, path: &str, reply: &Reply) {
    let operation = &doc["paths"][path][method.to_ascii_lowercase()];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let status = reply.status.to_string();
    let response = &operation["responses"][&status];
    assert!(
        response.is_object(),
        "{method} {path} answered {status}, which is not documented: {}",
        reply.text
    );
    let response = resolve(doc, response);
    let content = response["content"].as_object();
    let Some(content) = content else {
        return;
    };
    let media = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let Some(documented) = content.get(&media) else {
        panic!("{method} {path} {status}: content type {media:?} not documented");
    };
    if media != "application/json" {
        return;
    }
    let mut schema = documented["schema"].clone();
    schema["components"] = doc["components"].clone();
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|error| panic!("{method} {path} {status}: bad schema: {error}"));
    let body: Value = serde_json::from_str(&reply.text)
        .unwrap_or_else(|_| panic!("{method} {path} {status}: not JSON: {}", reply.text));
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match its schema: {errors:?}\n{}",
        reply.text
    );
}

/// The documented `(method, path)` pairs.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method.to_ascii_lowercase()).is_some() {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn the_server_serves_exactly_its_openapi_document_and_answers_in_its_schemas() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let served: BTreeSet<(String, String)> = serve::routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect();
    assert_eq!(
        documented(&doc),
        served,
        "documented routes (left) and served routes (right) differ"
    );
    let Some(server) = ApiServer::start("test-api-openapi").await else {
        return;
    };
    let published = server
        .send("GET", "/openapi.json", Auth::Nothing, None)
        .await;
    assert_eq!(
        published.json, doc,
        "the server publishes the document in the repo"
    );

    // Every route is there (not the JSON 404 of unknown paths, not 405) and answers as
    // documented, even to an empty request; other methods on its path are 405.
    for (method, path) in &served {
        let concrete = path
            .replace("{run_id}", "r-none")
            .replace("{page_id}", PAGE);
        let reply = server.send(method, &concrete, Auth::Token, None).await;
        assert_ne!(reply.status, 405, "{method} {path}");
        assert!(
            !(reply.status == 404 && reply.text.contains("no such route")),
            "{method} {path} is not served"
        );
        conform(&doc, method, path, &reply);
        for other in METHODS {
            if served.contains(&(other.to_owned(), path.clone())) {
                continue;
            }
            let reply = server.send(other, &concrete, Auth::Token, None).await;
            assert_eq!(
                reply.status, 405,
                "{other} {path} is served but not documented"
            );
        }
    }

    // A battery of calls, successes and refusals, each checked against the document.
    let check = |method: &'static str, path: &'static str| {
        let doc = doc.clone();
        move |reply: &Reply| conform(&doc, method, path, reply)
    };
    let unauthorized = server.send("GET", "/dead", Auth::Nothing, None).await;
    assert_eq!(unauthorized.status, 401);
    check("GET", "/dead")(&unauthorized);

    let runs = check("POST", "/campaigns/runs");
    let segment = server.dir.path().join("users.csv");
    std::fs::write(&segment, "external_id,messenger_id\nu1,101\nu2,\n").expect("segment");
    let start = format!("/campaigns/runs?segment={}", segment.display());
    let started = server.post(&start, "application/toml", CAMPAIGN).await;
    assert_eq!(started.status, 202, "{}", started.text);
    runs(&started);
    for (content_type, body, status) in [
        ("application/toml", "id = 3", 422),
        ("application/json", "{\"id\": ", 422),
        ("text/plain", CAMPAIGN, 415),
    ] {
        let reply = server.post(&start, content_type, body).await;
        assert_eq!(reply.status, status, "{}", reply.text);
        runs(&reply);
    }
    runs(
        &server
            .post("/campaigns/runs?strict=maybe", "application/toml", CAMPAIGN)
            .await,
    );

    let status = check("GET", "/campaigns/runs/{run_id}");
    let location = format!(
        "/campaigns/runs/{}",
        started.json["run_id"].as_str().expect("id")
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            server.get(&location).await.json["results"]["skipped"] == 1
        })
        .await
    );
    let report = server.get(&location).await;
    status(&report);
    assert_eq!(report.json["producer"]["published"], 1, "{}", report.text);
    status(&server.get("/campaigns/runs/r-none").await);

    let pause = check("POST", "/campaigns/runs/{run_id}/pause");
    let cancel = check("POST", "/campaigns/runs/{run_id}/cancel");
    let resume = check("POST", "/campaigns/runs/{run_id}/resume");
    pause(&server.post(&format!("{location}/pause"), "", "").await);
    cancel(&server.post(&format!("{location}/cancel"), "", "").await);
    let refused = server.post(&format!("{location}/resume"), "", "").await;
    assert_eq!(refused.status, 409);
    resume(&refused);
    let page = server.post("/pages/abc/resume", "", "").await;
    assert_eq!(page.status, 422);
    check("POST", "/pages/{page_id}/resume")(&page);

    let dead = check("GET", "/dead");
    server
        .publish(
            &server.topology.dead_exchange(),
            "",
            b"{oops",
            Headers::new().with_reason("not JSON"),
        )
        .await;
    let listed = server.get("/dead").await;
    assert_eq!(listed.json["total"], 1, "{}", listed.text);
    dead(&listed);
    dead(&server.get("/dead?code=x").await);
    let replay = check("POST", "/dead/replay");
    replay(
        &server
            .post_json("/dead/replay", &json!({"run_id": "r-none"}))
            .await,
    );
    replay(&server.post("/dead/replay", "application/json", "[").await);

    let import = check("POST", "/users/import");
    let csv = "external_id,messenger_id\nu1,1\n,2\n";
    let imported = server.post("/users/import", "text/csv", csv).await;
    assert_eq!(imported.json["malformed"], 1);
    import(&imported);
    import(&server.post("/users/import", "text/csv", "name\nx\n").await);
    import(
        &server
            .post("/users/import?format=xml", "text/csv", csv)
            .await,
    );
    let big = format!("external_id,messenger_id\n{}", "u,1\n".repeat(20_000));
    let too_big = server.post("/users/import", "text/csv", &big).await;
    assert_eq!(too_big.status, 413);
    import(&too_big);

    let track = check("POST", "/users/track");
    for body in [
        json!({"attributes": [{"external_id": "t1", "messenger_id": "5"}, {"x": 1}]}),
        json!({"attributes": [{"x": 1}]}),
        json!({"attributes": [], "events": []}),
    ] {
        track(&server.post_json("/users/track", &body).await);
    }
    track(&server.post("/users/track", "application/json", "{").await);
    let huge = "x".repeat(9 * 1024 * 1024);
    track(&server.post("/users/track", "application/json", &huge).await);

    // A minted ref links on its page (the ingest's tests show it); bad requests say why.
    let refs = check("POST", "/refs");
    let minted = server
        .post_json(
            "/refs",
            &json!({"external_id": "u-9", "page_id": PAGE, "ttl": "2d"}),
        )
        .await;
    assert_eq!(minted.status, 200, "{}", minted.text);
    let keys = herald_core::signed_ref::RefKeys::parse(&herald_core::Secret::new(
        super::server_api_rig::REF_SECRET,
    ))
    .expect("keys");
    let reference = minted.json["ref"].as_str().expect("ref");
    assert_eq!(
        keys.check(PAGE, reference, time::OffsetDateTime::now_utc()),
        herald_core::signed_ref::RefCheck::Valid("u-9".into())
    );
    assert!(
        minted.json["link"]
            .as_str()
            .is_some_and(|link| link == format!("https://m.me/{PAGE}?ref={reference}")),
        "{}",
        minted.text
    );
    refs(&minted);
    for body in [
        json!({"external_id": "u-9", "page_id": "not-a-page"}),
        json!({"external_id": "u-9", "page_id": PAGE, "ttl": "400d"}),
        json!({"external_id": "x".repeat(400), "page_id": PAGE}),
        json!({"external_id": "u-9"}),
    ] {
        let refused = server.post_json("/refs", &body).await;
        assert!(
            matches!(refused.status, 400 | 422),
            "{body}: {}",
            refused.text
        );
        refs(&refused);
    }
    server.stop().await;
}
