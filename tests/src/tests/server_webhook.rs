//! `herald_server::webhook` over real HTTP against the real broker: Meta's handshake, the
//! signature over the raw bytes (a forged, missing or malformed one publishes nothing), the body
//! limit, the body published byte for byte to `<p>.events`, 503 without a broker, and the sink
//! reconnecting after its connection is cut (through a TCP proxy, so the shared broker is never
//! disturbed). The rig here is shared with `server_ingest.rs`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herald_amqp::{AmqpSettings, Connection, Consumer, Topology};
use herald_server::webhook::{self, EventSink, WebhookConfig};
use herald_telemetry::Metrics;
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{broker, eventually, unique_name};

mod proxy;

pub(crate) use proxy::Proxy;

pub(crate) const APP_SECRET: &str = "test-app-secret";
pub(crate) const VERIFY_TOKEN: &str = "test-verify-token";
pub(crate) const PAGE: &str = "1000000001";

/// A unique topology on the real broker and the webhook router served on 127.0.0.1:0.
pub(crate) struct Rig {
    pub(crate) topology: Topology,
    pub(crate) amqp: AmqpSettings,
    pub(crate) connection: Connection,
    pub(crate) metrics: Metrics,
    pub(crate) sink: EventSink,
    pub(crate) base: String,
    server: JoinHandle<()>,
    http: reqwest::Client,
}

impl Rig {
    /// `None` when there is no broker (and `CI` is unset).
    pub(crate) async fn new(name: &str) -> Option<Self> {
        Self::with(name, WebhookConfig::DEFAULT_MAX_BODY_BYTES, None).await
    }

    /// With a body limit, and the sink's broker URL (default: the test broker).
    pub(crate) async fn with(
        name: &str,
        max_body_bytes: usize,
        sink_url: Option<String>,
    ) -> Option<Self> {
        drop(broker().await?);
        let topology = Topology::new(&unique_name(name)).expect("topology");
        let amqp = AmqpSettings {
            url: crate::amqp_addr().into(),
            ..AmqpSettings::default()
        };
        let connection = herald_amqp::connect(&amqp).await.expect("connect");
        topology.declare(&connection).await.expect("declare");
        let mut sink_amqp = amqp.clone();
        if let Some(url) = sink_url {
            sink_amqp.url = url.into();
        }
        let sink = EventSink::new(sink_amqp, topology.clone());
        let metrics = Metrics::new();
        let config = WebhookConfig {
            app_secret: APP_SECRET.into(),
            verify_token: VERIFY_TOKEN.into(),
            max_body_bytes,
        };
        let router = webhook::router(config, sink.clone(), metrics.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        Some(Self {
            topology,
            amqp,
            connection,
            metrics,
            sink,
            base,
            server,
            http: reqwest::Client::new(),
        })
    }

    pub(crate) fn webhook_url(&self) -> String {
        format!("{}/webhook", self.base)
    }

    /// POSTs `body` with `X-Hub-Signature-256: signature` (none when `None`).
    pub(crate) async fn post(&self, body: &[u8], signature: Option<&str>) -> StatusCode {
        let mut request = self
            .http
            .post(self.webhook_url())
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send().await.expect("POST /webhook").status()
    }

    /// POSTs `body` signed with the app secret.
    pub(crate) async fn post_signed(&self, body: &[u8]) -> StatusCode {
        self.post(body, Some(&sign(APP_SECRET, body))).await
    }

    async fn get(&self, query: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}?{query}", self.webhook_url()))
            .send()
            .await
            .expect("GET /webhook");
        let status = response.status();
        (status, response.text().await.expect("body"))
    }

    /// Messages ready in `queue`.
    pub(crate) async fn ready(&self, queue: &str) -> u32 {
        self.connection.message_count(queue).await.expect("count")
    }

    /// The webhook_requests counter for `outcome`.
    pub(crate) fn requests(&self, outcome: &str) -> u64 {
        self.metrics
            .webhook_requests
            .with_label_values(&[outcome])
            .get()
    }

    pub(crate) async fn cleanup(self) {
        self.server.abort();
        self.topology
            .delete(&self.connection)
            .await
            .expect("delete topology");
        let _ = self.connection.close().await;
    }
}

pub(crate) use crate::sign_webhook as sign;

/// One page webhook with one message from `psid`.
fn message_body(psid: &str, mid: &str) -> Vec<u8> {
    format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE}","time":1,"messaging":[{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE}"}},"timestamp":1,"message":{{"mid":"{mid}","text":"h\u00e9llo a\/b"}}}}]}}]}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn handshake_echoes_the_challenge_only_for_our_token_and_subscribe() {
    let Some(rig) = Rig::new("test-webhook-handshake").await else {
        return;
    };
    let check = |query: String, status: StatusCode, body: Option<&'static str>| {
        let rig = &rig;
        async move {
            let (got, text) = rig.get(&query).await;
            assert_eq!(got, status, "{query}");
            if let Some(body) = body {
                assert_eq!(text, body, "{query}");
            }
            assert!(!text.contains(VERIFY_TOKEN), "{query}");
        }
    };
    let challenge = "1158201444";
    let q = |mode: &str, token: &str| {
        format!("hub.mode={mode}&hub.challenge={challenge}&hub.verify_token={token}")
    };
    check(
        q("subscribe", VERIFY_TOKEN),
        StatusCode::OK,
        Some(challenge),
    )
    .await;
    check(
        "hub.mode=subscribe&hub.challenge=a%20b%26c&hub.verify_token=test-verify-token".into(),
        StatusCode::OK,
        Some("a b&c"),
    )
    .await;
    check(q("subscribe", "wrong"), StatusCode::FORBIDDEN, None).await;
    check(q("subscribe", ""), StatusCode::FORBIDDEN, None).await;
    check(q("unsubscribe", VERIFY_TOKEN), StatusCode::FORBIDDEN, None).await;
    check(
        format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}"),
        StatusCode::FORBIDDEN,
        None,
    )
    .await;
    check(String::new(), StatusCode::FORBIDDEN, None).await;
    assert_eq!(rig.requests("handshake_ok"), 2);
    assert_eq!(rig.requests("handshake_refused"), 5);
    rig.cleanup().await;
}

#[tokio::test]
async fn only_correctly_signed_bodies_are_published_byte_for_byte() {
    let Some(rig) = Rig::new("test-webhook-signature").await else {
        return;
    };
    let queue = rig.topology.events_ingest_queue();
    let body = message_body("2000000001", "m_sig");
    let good = sign(APP_SECRET, &body);
    let forged = sign("not-the-app-secret", &body);
    let other_body = sign(APP_SECRET, b"{}");
    let sha1_only = format!("sha1={}", "ab".repeat(20));
    let refused: [(&str, Option<&str>); 7] = [
        ("forged", Some(&forged)),
        ("signature of another body", Some(&other_body)),
        ("missing", None),
        ("not hex", Some("sha256=zzzz")),
        ("truncated", Some(&good[..good.len() - 2])),
        ("sha1 scheme", Some(&sha1_only)),
        ("empty", Some("")),
    ];
    for (case, signature) in refused {
        assert_eq!(
            rig.post(&body, signature).await,
            StatusCode::FORBIDDEN,
            "{case}"
        );
    }
    // The legacy sha1 header alone does not pass either.
    let response = reqwest::Client::new()
        .post(rig.webhook_url())
        .header("x-hub-signature", sha1_only.as_str())
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(rig.ready(&queue).await, 0, "a refused body was published");
    assert_eq!(rig.requests("bad_signature"), 8);

    assert_eq!(rig.post(&body, Some(&good)).await, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(5), || async {
            rig.ready(&queue).await == 1
        })
        .await
    );
    let mut consumer = Consumer::start(&rig.connection, &queue, 1)
        .await
        .expect("consume");
    let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a message")
        .expect("stream open")
        .expect("delivery");
    assert_eq!(
        delivery.body(),
        &body[..],
        "the body is published byte for byte"
    );
    assert_eq!(delivery.exchange(), rig.topology.events_exchange());
    let received = delivery.headers();
    let received_at = received.received_at();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    assert!(
        matches!(received_at, Some(ms) if (now_ms - 60_000..=now_ms + 1000).contains(&ms)),
        "{received_at:?}"
    );
    assert_eq!(
        received.webhook_signature().as_deref(),
        Some(good.as_str()),
        "the verified signature travels with the body, for the ingest to check again"
    );
    delivery.ack().await.expect("ack");
    let _ = consumer.close().await;
    assert_eq!(rig.requests("accepted"), 1);
    assert!(rig.sink.is_connected());
    let scraped = rig.metrics.encode();
    assert!(
        scraped.contains("herald_webhook_requests_total{outcome=\"bad_signature\"} 8"),
        "{scraped}"
    );
    assert!(scraped.contains("herald_webhook_publish_duration_seconds_count 1"));
    rig.cleanup().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_and_not_published() {
    let limit = 4096;
    let Some(rig) = Rig::with("test-webhook-size", limit, None).await else {
        return;
    };
    let queue = rig.topology.events_ingest_queue();
    let pad = |size: usize| {
        let head = br#"{"object":"page","entry":[],"pad":""#;
        let mut body = head.to_vec();
        body.resize(size - 2, b'x');
        body.extend_from_slice(br#""}"#);
        body
    };
    assert_eq!(
        rig.post_signed(&pad(limit + 1)).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        rig.post_signed(&pad(10 * limit)).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(rig.requests("too_large"), 2);
    assert_eq!(
        rig.ready(&queue).await,
        0,
        "an oversized body was published"
    );
    // Exactly at the limit passes.
    assert_eq!(rig.post_signed(&pad(limit)).await, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(5), || async {
            rig.ready(&queue).await == 1
        })
        .await
    );
    rig.cleanup().await;
}

#[tokio::test]
async fn without_a_broker_the_webhook_answers_503_well_before_metas_timeout() {
    // Nothing listens on port 1: the sink can never connect.
    let Some(rig) = Rig::with(
        "test-webhook-nobroker",
        WebhookConfig::DEFAULT_MAX_BODY_BYTES,
        Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
    )
    .await
    else {
        return;
    };
    let body = message_body("2000000001", "m_down");
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(
            rig.post_signed(&body).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // Meta gives a webhook 20 s; the sink gives up after PUBLISH_TIMEOUT.
        assert!(started.elapsed() < webhook::PUBLISH_TIMEOUT + Duration::from_secs(2));
    }
    assert!(!rig.sink.is_connected());
    assert_eq!(rig.requests("unavailable"), 3);
    // A bad signature is still a 403, broker or not.
    assert_eq!(rig.post(&body, None).await, StatusCode::FORBIDDEN);
    rig.cleanup().await;
}

#[tokio::test]
async fn the_sink_reconnects_after_its_connection_is_cut() {
    let Some(mut proxy) = Proxy::start().await else {
        return;
    };
    let Some(rig) = Rig::with(
        "test-webhook-reconnect",
        WebhookConfig::DEFAULT_MAX_BODY_BYTES,
        Some(proxy.amqp_url()),
    )
    .await
    else {
        return;
    };
    let queue = rig.topology.events_ingest_queue();
    assert!(
        eventually(Duration::from_secs(10), || async {
            rig.sink.is_connected()
        })
        .await
    );
    assert_eq!(
        rig.post_signed(&message_body("1", "m_a")).await,
        StatusCode::OK
    );

    proxy.cut();
    assert!(
        eventually(Duration::from_secs(10), || async {
            !rig.sink.is_connected()
        })
        .await
    );
    assert_eq!(
        rig.post_signed(&message_body("1", "m_b")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    proxy.restart().await;
    // Meta retries until it gets a 200; so does this loop.
    let mut delivered = false;
    for _ in 0..100 {
        if rig.post_signed(&message_body("1", "m_b")).await == StatusCode::OK {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "the sink never reconnected");
    assert!(rig.sink.is_connected());
    assert!(
        eventually(Duration::from_secs(5), || async {
            rig.ready(&queue).await == 2
        })
        .await
    );
    rig.cleanup().await;
}
