//! The admin API's test rig: `herald serve` in this process (`herald_server::serve::serve`) on
//! a unique topology and a fresh SQLite store, with a reqwest client that authenticates or not
//! (`Auth`), and helpers to publish on the broker and build results. Used by every
//! `server_api_*` file.

use std::time::Duration;

use herald_amqp::{AmqpSettings, Connection, Headers, Publisher, Topology};
use herald_core::Secret;
use herald_server::ops::Broker;
use herald_server::serve::{self, ServeError, ServeSettings};
use herald_server::webhook::WebhookConfig;
use herald_store::Store;
use herald_telemetry::{Health, Metrics};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{broker, unique_name};

/// The API token of `ApiServer::start`.
pub(crate) const TOKEN: &str = "test-api-token-0123456789abcdefghij";
/// The token `ApiServer::start` accepts for `GET /ledger/{job_id}` only.
pub(crate) const LEDGER_TOKEN: &str = "test-ledger-token-0123456789abcdefg";
/// The webhook's verify token and app secret.
pub(crate) const VERIFY_TOKEN: &str = "test-verify-token";
pub(crate) const APP_SECRET: &str = "test-app-secret";
/// The server's `HERALD_REF_SECRET`.
pub(crate) const REF_SECRET: &str = "k7=api-test-ref-secret-0123456789abcdef";
/// The page of the test campaigns.
pub(crate) const PAGE: &str = "1000000001";

/// How a request authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// `Authorization: Bearer TOKEN`.
    Token,
    /// No `Authorization` header.
    Nothing,
    /// This `Authorization` header.
    Header(&'a str),
}

/// An answer: status, headers, body as text and (when it is JSON) as a value.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
    pub(crate) json: Value,
}

/// A response read whole.
pub(crate) async fn reply_of(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

/// What to start.
pub(crate) struct Options {
    pub(crate) token: Option<&'static str>,
    pub(crate) ingest: bool,
    pub(crate) results: bool,
    /// Serve on an existing topology (another rig's) instead of a new one.
    pub(crate) prefix: Option<String>,
    /// Give the server a segment directory (the rig's temporary directory).
    pub(crate) segment_dir: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            token: Some(TOKEN),
            ingest: true,
            results: true,
            prefix: None,
            segment_dir: true,
        }
    }
}

/// `herald serve` in this process.
pub(crate) struct ApiServer {
    pub(crate) url: String,
    pub(crate) topology: Topology,
    pub(crate) connection: Connection,
    /// The test's own connection to the server's database.
    pub(crate) store: Store,
    pub(crate) database_url: String,
    pub(crate) dir: tempfile::TempDir,
    owns_topology: bool,
    client: reqwest::Client,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

impl ApiServer {
    /// A server with a token, both consumers, a new topology; `None` without a broker.
    pub(crate) async fn start(name: &str) -> Option<Self> {
        Self::start_with(name, Options::default()).await
    }

    pub(crate) async fn start_with(name: &str, options: Options) -> Option<Self> {
        drop(broker().await?);
        let owns_topology = options.prefix.is_none();
        let prefix = options.prefix.unwrap_or_else(|| unique_name(name));
        let topology = Topology::new(&prefix).expect("topology");
        let amqp = AmqpSettings {
            url: crate::amqp_addr().into(),
            ..AmqpSettings::default()
        };
        // The test's own connection; the server gets `amqp`.
        let connection = herald_amqp::connect(&crate::test_amqp())
            .await
            .expect("connect");
        topology.declare(&connection).await.expect("declare");
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let url = Secret::new(database_url.clone());
        let server_store = Store::connect(&url).await.expect("server store");
        let store = Store::connect(&url).await.expect("test store");
        let settings = ServeSettings {
            webhook: WebhookConfig::new(Secret::new(APP_SECRET), Secret::new(VERIFY_TOKEN)),
            api_token: options.token.map(Secret::new),
            ledger_token: Some(Secret::new(LEDGER_TOKEN)),
            ref_keys: Some(
                herald_core::signed_ref::RefKeys::parse(&Secret::new(REF_SECRET))
                    .expect("ref keys"),
            ),
            store: server_store,
            broker: Broker {
                amqp: amqp.clone(),
                topology: topology.clone(),
            },
            segment_dir: options.segment_dir.then(|| dir.path().to_owned()),
            ingest: options.ingest,
            results: options.results,
            missed_while_down: false,
            max_import_bytes: 64 * 1024,
            page_rates: herald_core::rates::PageRates::default(),
        };
        let listener = serve::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve::serve(
            listener.into(),
            settings,
            Metrics::new(),
            Health::default(),
            shutdown.clone(),
        ));
        Some(Self {
            url,
            topology,
            connection,
            store,
            database_url,
            dir,
            owns_topology,
            client: reqwest::Client::new(),
            shutdown,
            task,
        })
    }

    /// One request; `body` is `(content type, bytes)`.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        request = match auth {
            Auth::Token => request.bearer_auth(TOKEN),
            Auth::Nothing => request,
            Auth::Header(value) => request.header("authorization", value),
        };
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        reply_of(request.send().await.expect("request")).await
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, Auth::Token, None).await
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send("POST", path, Auth::Token, Some(("application/json", bytes)))
            .await
    }

    pub(crate) async fn post(&self, path: &str, content_type: &str, body: &str) -> Reply {
        let bytes = body.as_bytes().to_vec();
        self.send("POST", path, Auth::Token, Some((content_type, bytes)))
            .await
    }

    /// Publishes one message on `exchange` and waits for the confirm.
    pub(crate) async fn publish(&self, exchange: &str, key: &str, body: &[u8], headers: Headers) {
        let publisher = Publisher::open(&self.connection, 16)
            .await
            .expect("publisher");
        publisher
            .publish(exchange, key, body, headers)
            .await
            .expect("publish")
            .await
            .expect("confirmed");
        publisher.close().await.expect("close publisher");
    }

    /// Stops the server (it must stop cleanly) and deletes the topology it created.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the server stops within 30 s")
            .expect("server task");
        stopped.expect("the server stopped cleanly");
        if self.owns_topology {
            self.topology
                .delete(&self.connection)
                .await
                .expect("delete topology");
        }
        let _ = self.connection.close().await;
        self.store.close().await;
    }
}

/// A `DeliveryResult` v1 as a worker publishes it.
pub(crate) fn result(
    run: &str,
    user: &str,
    status: &str,
    code: Option<u32>,
    finished_at: OffsetDateTime,
) -> Value {
    json!({
        "v": 1,
        "job_id": format!("{run}:{user}"),
        "run_id": run,
        "campaign_id": "api-test",
        "external_id": user,
        "page_id": PAGE,
        "status": status,
        "message_id": (status == "sent").then(|| format!("m_{user}")),
        "error": code.map(|code| json!({"code": code, "subcode": null, "class": "drop_user",
            "message": "no matching user", "fbtrace_id": null})),
        "attempts": 1,
        "finished_at": finished_at.format(&Rfc3339).expect("rfc3339"),
    })
}

/// The campaign of the run tests: every user with a PSID gets a job, the blank one is skipped.
pub(crate) const CAMPAIGN: &str = r#"
id = "api-test"
page_id = "1000000001"
messaging_type = "UPDATE"

[message]
text = "Hi {{ first_name | default: 'there' }}"

[delivery]
window = "off"
"#;
