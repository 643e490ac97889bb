//! The compose fleet without Docker: the Herald services of docker-compose.yml (the simulator,
//! `herald serve`, three workers) run as local processes with the commands and environment
//! `docker-compose config` resolves (`fleet.rs` says what is translated), on this machine's
//! RabbitMQ and PostgreSQL in place of the compose ones. A campaign is then sent the two ways
//! the README's "Run a fleet" section gives, read from the README itself (`readme.rs`): from
//! the host with `herald users import` and `herald campaign send` and the
//! `HERALD_DATABASE_URL` it says to export, and through serve's admin API. Both must finish in `campaign status` (and the API's status) with
//! every message sent, delivered and read, the receipts coming from the simulator's webhook.
//! Prometheus and Grafana are not started: deploy.rs checks their files.

mod file;
mod fleet;
mod readme;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use herald_amqp::{AmqpSettings, Topology};
use serde_json::Value;

use self::file::{Published, Service};
use self::fleet::{Fleet, Network, with_database};
use self::readme::FleetReadme;
use super::worker_rig::{sample, scrape};
use crate::{broker, herald, unique_name};

/// The Herald services, in depends_on order, with the path that says each is ready.
const HERALD_SERVICES: [(&str, &str); 3] = [
    ("sim", "/_sim/stats"),
    ("serve", "/readyz"),
    ("worker", "/readyz"),
];
/// Users the test adds to the README's sample segment, for each way of sending.
const EXTRA_USERS: usize = 40;
/// How long a run may take to be sent, delivered and read.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_fleet_finishes_a_campaign_sent_the_readme_way() {
    let Some(services) = file::load() else {
        return;
    };
    let Some(connection) = broker().await else {
        return;
    };
    let _ = connection.close(200, "bye".into()).await;
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let prefix = unique_name("test-compose");
    let outcome = AssertUnwindSafe(run(&services, &database, &prefix))
        .catch_unwind()
        .await;
    let amqp = AmqpSettings {
        url: crate::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let connection = herald_amqp::connect(&amqp).await.expect("connect");
    Topology::new(&prefix)
        .expect("topology")
        .delete(&connection)
        .await
        .expect("delete topology");
    let _ = connection.close().await;
    database.drop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn run(services: &BTreeMap<String, Service>, database: &TestDatabase, prefix: &str) {
    let readme = FleetReadme::load();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    let expected = [
        "grafana",
        "postgres",
        "prometheus",
        "rabbitmq",
        "serve",
        "sim",
        "worker",
    ];
    assert_eq!(
        names,
        BTreeSet::from(expected),
        "a new service needs a place in this test"
    );
    for (name, _) in HERALD_SERVICES {
        assert!(services[name].built, "{name} is built from this repository");
        assert!(
            !services[name]
                .environment
                .contains_key("HERALD_TOPOLOGY_PREFIX"),
            "the fleet uses the default topology, as the host does"
        );
    }
    assert_eq!(services["worker"].scale, 3, "three workers");
    let host_database = check_host_reaches_the_fleet(services, &readme);

    let mut network = Network::default();
    network.map("rabbitmq", 5672, &host_port(&crate::amqp_addr(), 5672));
    network.map("postgres", 5432, &database.host_port);
    let logs = tempfile::tempdir().expect("temp dir");
    let fleet = Fleet::start(
        services,
        &HERALD_SERVICES,
        &mut network,
        &[("HERALD_TOPOLOGY_PREFIX", prefix)],
        &database.name,
        logs.path(),
    )
    .await;
    for replica in &fleet.replicas {
        if replica.service != "sim" {
            let metrics = scrape(&format!("http://{}/metrics", replica.addr)).await;
            assert_eq!(
                sample(&metrics, "herald_broker_connected"),
                Some(1.0),
                "{} reports its broker connection",
                replica.service
            );
        }
    }

    // From the host, the README's way: its HERALD_DATABASE_URL, pointed at the test database.
    let published = published(&services["postgres"], 5432).host_port;
    let host_database = with_database(
        &host_database.replacen(
            &format!("@127.0.0.1:{published}/"),
            &format!("@{}/", database.host_port),
            1,
        ),
        &database.name,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let host_env = [
        ("HERALD_DATABASE_URL", host_database.as_str()),
        ("HERALD_TOPOLOGY_PREFIX", prefix),
    ];
    let segment = segment_file(&readme.segment, "h", "241");
    let users = segment.lines().count() - 1;
    let segment_name = readme
        .send
        .windows(2)
        .find(|pair| pair[0] == "--segment")
        .map(|pair| pair[1].as_str())
        .expect("campaign send --segment FILE");
    assert!(
        readme
            .campaign
            .contains(&format!("file = \"{segment_name}\"")),
        "the sample campaign names the segment it is sent with"
    );
    write(dir.path(), &readme.send[2], &readme.campaign);
    write(dir.path(), segment_name, &segment);
    assert_eq!(
        readme.import[2], segment_name,
        "the segment's users are imported"
    );
    let import: Vec<&str> = readme.import.iter().map(String::as_str).collect();
    herald_in(dir.path(), &host_env, &import).await;
    let send: Vec<&str> = readme.send.iter().map(String::as_str).collect();
    let output = herald_in(dir.path(), &host_env, &send).await;
    let run_id = output
        .lines()
        .find_map(|l| l.strip_prefix("run_id: "))
        .unwrap_or_else(|| panic!("no run_id in {output}"))
        .to_owned();
    let status = || {
        let args: Vec<String> = readme
            .status
            .iter()
            .map(|a| {
                if a == "RUN_ID" {
                    run_id.clone()
                } else {
                    a.clone()
                }
            })
            .chain(["--json".to_owned()])
            .collect();
        let dir = dir.path().to_owned();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            serde_json::from_str(&herald_in(&dir, &host_env, &args).await).expect("status JSON")
        }
    };
    if let Err(report) = finished(users, status).await {
        panic!(
            "the host's run never finished: {report:#}\n{}",
            fleet.logs()
        );
    }
    let table: Vec<String> = readme
        .status
        .iter()
        .map(|a| a.replace("RUN_ID", &run_id))
        .collect();
    let table: Vec<&str> = table.iter().map(String::as_str).collect();
    let table = herald_in(dir.path(), &host_env, &table).await;
    for label in ["delivered", "read"] {
        let shown = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(label))
            .and_then(|l| l.split_whitespace().last());
        assert_eq!(shown, Some(users.to_string().as_str()), "{label}:\n{table}");
    }

    // serve sees the same run: the API answers what the host's status does.
    let api = Api {
        base: format!("http://{}", fleet.addr("serve")),
        token: readme.api_token.clone(),
    };
    let reply = api.get(&format!("/campaigns/runs/{run_id}")).await;
    assert_eq!(reply["results"]["sent"], users, "{reply:#}");
    assert_eq!(reply["read"], users, "{reply:#}");

    // Through the admin API, the README's other way: import the users, start a store run.
    assert_eq!(
        readme.api_token,
        services["serve"].environment["HERALD_API_TOKEN"]
    );
    let [
        (import, Some(csv)),
        (start, Some(document)),
        (report_path, None),
    ] = readme.api_calls.as_slice()
    else {
        panic!("import, start, status: {:?}", readme.api_calls);
    };
    assert_eq!(csv, segment_name, "the API imports the sample segment");
    let segment = segment_file(&readme.segment, "a", "242");
    let api_users = segment.lines().count() - 1;
    api.post(import, "text/csv", &segment, 200).await;
    let store_campaign = readme
        .campaign
        .replace("file = \"users.csv\"", "source = \"store\"");
    assert_ne!(
        store_campaign, readme.campaign,
        "the sample names users.csv"
    );
    assert!(document.ends_with(".toml"), "{document}");
    let started = api
        .post(start, "application/toml", &store_campaign, 202)
        .await;
    let api_run = started["run_id"].as_str().expect("run_id").to_owned();
    let path = report_path.replace("RUN_ID", &api_run);
    // A store run reaches every user of the page: the host's imported ones too.
    let audience = users + api_users;
    if let Err(report) = finished(audience, || api.get(&path)).await {
        panic!("the API's run never finished: {report:#}\n{}", fleet.logs());
    }

    let stats = reqwest::get(format!("http://{}/_sim/stats", fleet.addr("sim")))
        .await
        .expect("sim stats");
    let stats: Value = serde_json::from_slice(&stats.bytes().await.expect("body")).expect("JSON");
    assert_eq!(stats["accepted"], users + audience, "{stats:#}");
    let failed = fleet.stop();
    assert!(failed.is_empty(), "did not exit 0 on SIGTERM: {failed:?}");
}

/// The README's `HERALD_DATABASE_URL` is serve's, seen from the host through the published
/// PostgreSQL port; and the host's default broker URL reaches the published RabbitMQ.
fn check_host_reaches_the_fleet(
    services: &BTreeMap<String, Service>,
    readme: &FleetReadme,
) -> String {
    let postgres = published(&services["postgres"], 5432);
    assert_eq!(postgres.host_ip, "127.0.0.1");
    let serve_database = &services["serve"].environment["HERALD_DATABASE_URL"];
    let mut network = Network::default();
    network.map(
        "postgres",
        5432,
        &format!("127.0.0.1:{}", postgres.host_port),
    );
    assert_eq!(
        readme.database_url,
        network.translate(serve_database),
        "the README's HERALD_DATABASE_URL must name serve's database"
    );
    let env = &services["postgres"].environment;
    let credentials = format!("//{}:{}@", env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]);
    assert!(serve_database.contains(&credentials), "{serve_database}");
    assert!(
        serve_database.ends_with(&format!("/{}", env["POSTGRES_DB"])),
        "{serve_database}"
    );
    let rabbitmq = published(&services["rabbitmq"], 5672);
    assert_eq!(
        (rabbitmq.host_ip.as_str(), rabbitmq.host_port),
        ("127.0.0.1", 5672),
        "the host's default HERALD_AMQP_URL reaches the fleet's RabbitMQ"
    );
    readme.database_url.clone()
}

fn published(service: &Service, container_port: u16) -> &Published {
    service
        .ports
        .iter()
        .find(|p| p.container_port == container_port)
        .unwrap_or_else(|| panic!("{} does not publish {container_port}", service.image))
}

/// The README's sample segment with its users renamed (`tag-N`, PSIDs starting with
/// `psid_prefix`), plus `EXTRA_USERS` more.
fn segment_file(sample: &str, tag: &str, psid_prefix: &str) -> String {
    let mut lines = sample.lines();
    let header = lines.next().expect("a header row");
    assert!(header.starts_with("external_id,messenger_id"), "{header}");
    let mut rows = vec![header.to_owned()];
    let mut add = |id: String, psid: String, rest: &str| rows.push(format!("{id},{psid}{rest}"));
    for (n, line) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        let rest = line.splitn(3, ',').nth(2).map(|r| format!(",{r}"));
        add(
            format!("{tag}-{n}"),
            format!("{psid_prefix}{n:014}"),
            &rest.unwrap_or_default(),
        );
    }
    let columns = header.split(',').count();
    let blank_rest = ",x".repeat(columns - 2);
    for n in 100..100 + EXTRA_USERS {
        add(
            format!("{tag}-{n}"),
            format!("{psid_prefix}{n:014}"),
            &blank_rest,
        );
    }
    rows.join("\n") + "\n"
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

/// `herald ARGS` in `dir` with `env`, to completion, without blocking the runtime; stdout.
async fn herald_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let output = tokio::process::Command::from(herald(env))
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .expect("run herald");
    assert!(
        output.status.success(),
        "herald {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Polls `status` until the run is finished with `users` sent, delivered and read; the last
/// report either way.
async fn finished<F, Fut>(users: usize, mut status: F) -> Result<Value, Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let report = status().await;
        let done = report["producer"]["complete"] == true
            && report["producer"]["published"] == users
            && report["pending"] == 0
            && report["results"]["sent"] == users
            && report["delivered"] == users
            && report["read"] == users;
        if done {
            return Ok(report);
        }
        if Instant::now() >= deadline {
            return Err(report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// serve's admin API with the README's token.
struct Api {
    base: String,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "GET {path}");
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON")
    }

    async fn post(&self, path: &str, content_type: &str, body: &str, expected: u16) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert_eq!(status, expected, "POST {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// A fresh database on the test PostgreSQL (`TEST_POSTGRES_URL`, default the `herald` role of
/// scripts/services.sh), dropped by `drop`.
struct TestDatabase {
    admin: sqlx::PgPool,
    name: String,
    /// `host:port` of the server.
    host_port: String,
}

impl TestDatabase {
    /// `None` (after `skipping: no postgres`) when PostgreSQL is unreachable outside `CI`.
    async fn create() -> Option<Self> {
        let base = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://herald:herald@127.0.0.1:5432/herald_test".to_owned());
        let probe = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect(&base)
            .await;
        let admin = match probe {
            Ok(pool) => pool,
            Err(error) if std::env::var_os("CI").is_some() => {
                panic!("CI is set but PostgreSQL is unreachable ({error}); run scripts/test")
            }
            Err(error) => {
                eprintln!("skipping: no postgres ({error})");
                return None;
            }
        };
        let name = unique_name("compose").replace('-', "_");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&admin)
            .await
            .expect("create database (the role needs CREATEDB)");
        Some(Self {
            admin,
            name,
            host_port: host_port(&base, 5432),
        })
    }

    async fn drop(self) {
        sqlx::query(&format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await
            .expect("drop database");
        self.admin.close().await;
    }
}

/// `host:port` of a URL (`default_port` when it names none).
fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    }
}
