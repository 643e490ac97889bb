//! The compose fleet without Docker: the Herald services of docker-compose.yml (the simulator,
//! `herald serve`, three workers) run as local processes with the commands and environment
//! `docker-compose config` resolves (`fleet.rs` says what is translated), on this machine's
//! RabbitMQ and PostgreSQL in place of the compose ones. A campaign is then sent the two ways
//! the README's "Run a fleet" section gives, read from the README itself (`readme.rs`): from
//! the host with `herald users import` and `herald campaign send` and the
//! `HERALD_DATABASE_URL` it says to export, and through serve's admin API. Both must finish in `campaign status` (and the API's status) with
//! every message sent, delivered and read, the receipts coming from the simulator's webhook.
//! Prometheus and Grafana are not started: deploy.rs checks their files.

mod api;
mod database;
mod file;
mod fleet;
mod host;
mod readme;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde_json::Value;

use self::api::Api;
use self::database::{TestDatabase, host_port};
use self::file::{Published, Service};
use self::fleet::{Fleet, Network, Place, run_once};
use self::host::{Host, segment_file};
use self::readme::FleetReadme;
use super::broker_roles;
use crate::worker_rig::{sample, scrape};
use crate::{broker, unique_name};

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
    let _ = connection.close().await;
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let vhost = unique_name("test-compose");
    if !broker_roles::import_definitions(&vhost) {
        assert!(std::env::var_os("CI").is_none(), "rabbitmqctl unavailable");
        return;
    }
    let outcome = AssertUnwindSafe(run(&services, &database, &vhost))
        .catch_unwind()
        .await;
    broker_roles::delete_vhost(&vhost);
    database.drop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn run(services: &BTreeMap<String, Service>, database: &TestDatabase, vhost: &str) {
    let readme = FleetReadme::load();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    let expected = [
        "grafana",
        "postgres",
        "prometheus",
        "rabbitmq",
        "serve",
        "sim",
        "topology",
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
    let place = Place {
        database: &database.name,
        vhost,
    };
    // As its own broker user, the only one that may declare.
    assert!(
        services["topology"].environment["HERALD_AMQP_URL"].contains("herald-admin"),
        "the topology is declared by herald-admin"
    );
    run_once(&services["topology"], &network, &place).await;
    let fleet = Fleet::start(
        services,
        &HERALD_SERVICES,
        &mut network,
        &place,
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

    let api = Api {
        base: format!("http://{}", fleet.addr("serve")),
        token: readme.api_token.clone(),
    };
    assert_eq!(
        readme.api_token,
        services["serve"].environment["HERALD_API_TOKEN"]
    );
    let host = Host {
        readme: &readme,
        database: &host_database,
        published_postgres: published(&services["postgres"], 5432).host_port,
        vhost,
    };
    let users = host.send(database, &api, &fleet).await;
    // A store run reaches every user of the page: the host's imported ones too.
    let audience = users + send_through_api(&readme, &api, users, &fleet).await;

    let stats = reqwest::get(format!("http://{}/_sim/stats", fleet.addr("sim")))
        .await
        .expect("sim stats");
    let stats: Value = serde_json::from_slice(&stats.bytes().await.expect("body")).expect("JSON");
    assert_eq!(stats["accepted"], users + audience, "{stats:#}");
    let failed = fleet.stop().await;
    assert!(failed.is_empty(), "did not exit 0 on SIGTERM: {failed:?}");
}

/// The README's other way, through the admin API: imports its segment (with more users than
/// the host's), starts a store run of the sample campaign, and waits until the API's status
/// shows all `host_users` and these sent, delivered and read. Returns how many it imported.
async fn send_through_api(
    readme: &FleetReadme,
    api: &Api,
    host_users: usize,
    fleet: &Fleet,
) -> usize {
    let [
        (import, Some(csv)),
        (start, Some(document)),
        (report_path, None),
    ] = readme.api_calls.as_slice()
    else {
        panic!("import, start, status: {:?}", readme.api_calls);
    };
    assert_eq!(csv, &readme.import[2], "the API imports the sample segment");
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
    if let Err(report) = finished(host_users + api_users, || api.get(&path)).await {
        panic!("the API's run never finished: {report:#}\n{}", fleet.logs());
    }
    api_users
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
