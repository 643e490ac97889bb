//! Real HTTP over 127.0.0.1 against tiny canned servers: the request the client builds, how a
//! response becomes `Sent` or `SendError`, and that no error ever shows the token or secret.

mod server;

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::Duration;

use herald_core::ErrorClass;

use super::*;
use crate::error::chain_text;
use server::{canned_server, endless_server, http_response, silent_server};

const TOKEN: &str = "EAAB-page-token-SENTINEL";
const APP_SECRET: &str = "app-secret-SENTINEL";
const BODY: &str = r#"{"recipient":{"id":"1254477777772919"},"messaging_type":"UPDATE","message":{"text":"Olá, {{x}} ✓"}}"#;

fn settings(addr: SocketAddr, app_secret: Option<&str>) -> GraphSettings {
    GraphSettings {
        graph_url: format!("http://{addr}"),
        app_secret: app_secret.map(Secret::new),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..GraphSettings::default()
    }
}

fn client(settings: GraphSettings) -> GraphClient {
    GraphClient::new(settings).expect("valid settings")
}

async fn send(client: &GraphClient, attempt: u32) -> Result<Sent, SendError> {
    client
        .send(
            "1000000001",
            &Secret::new(TOKEN),
            Bytes::from_static(BODY.as_bytes()),
            attempt,
        )
        .await
}
/// Neither secret, nor the query that carries them, shows anywhere an error can be printed.
fn assert_no_secrets(error: &SendError) {
    let info = error.error_info();
    let mut shown = vec![
        format!("{error}"),
        format!("{error:?}"),
        format!("{error:#?}"),
        chain_text(error),
        info.message.clone(),
        format!("{info:?}"),
    ];
    let mut source = error.source();
    while let Some(cause) = source {
        shown.push(format!("{cause}"));
        shown.push(format!("{cause:?}"));
        source = cause.source();
    }
    for text in shown {
        for needle in [TOKEN, APP_SECRET, "access_token", "appsecret_proof="] {
            assert!(!text.contains(needle), "{needle:?} leaked in: {text}");
        }
    }
}

#[tokio::test]
async fn posts_the_body_with_token_and_time_stamped_proof() {
    let usage = r#"{"1000000001":[{"type":"messenger","call_count":42,"total_cputime":7,"total_time":9,"estimated_time_to_regain_access":0}]}"#;
    let ok = http_response(
        "200 OK",
        &[("X-Business-Use-Case-Usage", usage)],
        r#"{"recipient_id":"1254477777772919","message_id":"m_AG5Hz2U"}"#,
    );
    let (addr, mut requests) = canned_server(ok).await;
    let client = client(settings(addr, Some(APP_SECRET)));

    let sent = send(&client, 1).await.expect("sent");
    assert_eq!(sent.message_id, "m_AG5Hz2U");
    assert_eq!(sent.recipient_id.as_deref(), Some("1254477777772919"));
    assert_eq!(
        sent.usage,
        Some(Usage {
            ratio: 0.42,
            regain_access: None
        })
    );

    let request = requests.recv().await.expect("one request");
    assert!(
        request.target.starts_with("/v25.0/1000000001/messages?"),
        "{}",
        request.target
    );
    assert_eq!(request.body, BODY.as_bytes(), "body is sent byte-for-byte");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), None);
    let query = request.query();
    let value = |key: &str| {
        let found = query
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone());
        found.unwrap_or_else(|| panic!("query parameter {key} missing"))
    };
    assert_eq!(value("access_token"), TOKEN);
    let time: u64 = value("appsecret_time").parse().expect("integer seconds");
    let expected = appsecret_proof(&Secret::new(APP_SECRET), &Secret::new(TOKEN), time);
    assert_eq!(value("appsecret_proof"), expected);
}

#[tokio::test]
async fn reuses_a_kept_alive_connection() {
    let ok = http_response("200 OK", &[], r#"{"message_id":"m_1"}"#);
    let (addr, mut requests) = canned_server(ok).await;
    let client = client(settings(addr, None));
    for attempt in 1..=3 {
        send(&client.clone(), attempt).await.expect("sent");
    }
    for _ in 0..3 {
        let request = requests.recv().await.expect("request");
        assert_eq!(
            request.connection, 1,
            "every send rides the first connection"
        );
        assert!(
            request
                .query()
                .iter()
                .all(|(name, _)| !name.starts_with("appsecret"))
        );
    }
}

#[tokio::test]
async fn graph_error_is_classified_and_never_shows_secrets() {
    // docs/messenger-platform.md §3.1 shape; the message even echoes the token, which must be
    // masked.
    let body = format!(
        r#"{{"error":{{"message":"Error validating access token {TOKEN}","type":"OAuthException","code":190,"error_subcode":463,"is_transient":false,"fbtrace_id":"EJplcsCHuLu"}}}}"#
    );
    let usage = r#"{"call_count":3,"total_time":1,"total_cputime":1}"#;
    let (addr, _requests) = canned_server(http_response(
        "400 Bad Request",
        &[("X-App-Usage", usage)],
        &body,
    ))
    .await;
    let error = send(&client(settings(addr, Some(APP_SECRET))), 1)
        .await
        .expect_err("graph error");

    let SendError::Graph(graph) = &error else {
        panic!("expected SendError::Graph, got {error:?}")
    };
    assert_eq!(
        (graph.status, graph.code, graph.subcode),
        (400, 190, Some(463))
    );
    assert_eq!(graph.fbtrace_id.as_deref(), Some("EJplcsCHuLu"));
    assert_eq!(error.verdict().class, ErrorClass::HaltPage);
    assert_eq!(error.kind(), "page_blocked");
    assert_eq!(
        error.usage(),
        Some(&Usage {
            ratio: 0.03,
            regain_access: None
        })
    );
    let info = error.error_info();
    assert_eq!(
        (info.code, info.subcode, info.class),
        (Some(190), Some(463), Some(ErrorClass::HaltPage))
    );
    assert_no_secrets(&error);
}

#[tokio::test]
async fn non_graph_error_body_is_http() {
    let (addr, _requests) = canned_server(http_response(
        "502 Bad Gateway",
        &[],
        "<html>upstream</html>",
    ))
    .await;
    let error = send(&client(settings(addr, Some(APP_SECRET))), 1)
        .await
        .expect_err("http error");
    assert!(
        matches!(error, SendError::Http { status: 502, .. }),
        "{error:?}"
    );
    assert_eq!(error.verdict().class, ErrorClass::Retry);
    assert_no_secrets(&error);
}

#[tokio::test]
async fn an_answer_over_the_cap_is_oversize_classified_by_its_status() {
    // Announced too large: refused before reading.
    let big = format!(
        "{{\"message_id\":\"m_1\",\"pad\":\"{}\"}}",
        " ".repeat(MAX_RESPONSE_BYTES)
    );
    let (addr, _requests) = canned_server(http_response("200 OK", &[], &big)).await;
    let error = send(&client(settings(addr, Some(APP_SECRET))), 1)
        .await
        .expect_err("oversize");
    assert!(
        matches!(error, SendError::Oversize { status: 200, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.verdict().class,
        ErrorClass::Invalid,
        "a 2xx was probably delivered: never resent blindly, as a malformed success"
    );
    assert_eq!(error.kind(), "oversize_response");
    assert!(error.to_string().contains("over 1048576 bytes"), "{error}");
    assert_no_secrets(&error);

    // No length and no end: reading stops at the cap.
    for (status_line, class) in [
        ("200 OK", ErrorClass::Invalid),
        ("503 Service Unavailable", ErrorClass::Retry),
    ] {
        let (addr, written) = endless_server(status_line).await;
        let error = send(&client(settings(addr, Some(APP_SECRET))), 1)
            .await
            .expect_err("oversize");
        assert!(matches!(error, SendError::Oversize { .. }), "{error:?}");
        assert_eq!(error.verdict().class, class, "{status_line}");
        assert_eq!(
            error.status(),
            Some(status_line[..3].parse().expect("status"))
        );
        let sent = written.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            sent < 16 * MAX_RESPONSE_BYTES,
            "the client read {sent} bytes of an endless body"
        );
    }
}

#[tokio::test]
async fn connection_refused_is_transport() {
    let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let error = send(&client(settings(addr, Some(APP_SECRET))), 1)
        .await
        .expect_err("refused");
    assert!(matches!(error, SendError::Transport { .. }), "{error:?}");
    assert_eq!(error.verdict().class, ErrorClass::Retry);
    assert_eq!(error.kind(), "transport");
    assert_no_secrets(&error);
}

#[tokio::test]
async fn silent_server_times_out() {
    let addr = silent_server().await;
    let settings = GraphSettings {
        request_timeout: Duration::from_millis(300),
        ..settings(addr, Some(APP_SECRET))
    };
    let error = send(&client(settings), 1).await.expect_err("timeout");
    assert!(matches!(error, SendError::Timeout { .. }), "{error:?}");
    assert_eq!(error.verdict().class, ErrorClass::Retry);
    assert_no_secrets(&error);
}

#[test]
fn messages_url_shape() {
    let check = |graph_url: &str, page_id: &str, expected: &str| {
        let settings = GraphSettings {
            graph_url: graph_url.to_owned(),
            ..GraphSettings::default()
        };
        let url = client(settings).messages_url(page_id, &Secret::new("t"), 7);
        assert_eq!(url.as_str(), expected);
    };
    check(
        "https://graph.facebook.com",
        "1000000001",
        "https://graph.facebook.com/v25.0/1000000001/messages?access_token=t",
    );
    check(
        "http://127.0.0.1:9/sim/",
        "1",
        "http://127.0.0.1:9/sim/v25.0/1/messages?access_token=t",
    );
    // A page id cannot escape its path segment; a stray query on the base is dropped.
    check(
        "http://h/?x=1",
        "../me?a=b",
        "http://h/v25.0/..%2Fme%3Fa=b/messages?access_token=t",
    );
}

#[test]
fn rejects_unusable_settings() {
    let check = |settings: GraphSettings, expected: fn(&BuildError) -> bool| {
        let error = GraphClient::new(settings).expect_err("invalid settings");
        assert!(expected(&error), "{error:?}");
    };
    let base = GraphSettings::default;
    check(
        GraphSettings {
            graph_url: "not a url".into(),
            ..base()
        },
        |e| matches!(e, BuildError::GraphUrl { .. }),
    );
    check(
        GraphSettings {
            graph_url: "ftp://h".into(),
            ..base()
        },
        |e| matches!(e, BuildError::GraphUrl { .. }),
    );
    check(
        GraphSettings {
            graph_url: "mailto:a@b".into(),
            ..base()
        },
        |e| matches!(e, BuildError::GraphUrl { .. }),
    );
    check(
        GraphSettings {
            version: " ".into(),
            ..base()
        },
        |e| matches!(e, BuildError::Version),
    );
    check(
        GraphSettings {
            version: "v25.0/x".into(),
            ..base()
        },
        |e| matches!(e, BuildError::Version),
    );
    check(
        GraphSettings {
            app_secret: Some(Secret::new(" ")),
            ..base()
        },
        |e| matches!(e, BuildError::BlankAppSecret),
    );
    check(
        GraphSettings {
            request_timeout: Duration::ZERO,
            ..base()
        },
        |e| matches!(e, BuildError::ZeroTimeout { .. }),
    );
    assert!(
        !format!(
            "{:?}",
            client(GraphSettings {
                app_secret: Some(Secret::new(APP_SECRET)),
                ..base()
            })
        )
        .contains(APP_SECRET)
    );
}
