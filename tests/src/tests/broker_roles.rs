//! The broker roles of `deploy/rabbitmq/definitions.json`, imported into a vhost of the local
//! RabbitMQ: `herald topology` as `herald-admin` declares; the producer, the worker and serve,
//! each as its own user with no configure permission, then send a campaign and store its
//! results; and each role is refused what it has no business doing (a worker or a producer
//! publishing webhook events, a producer or serve consuming jobs, a worker publishing jobs).
//! Before the topology exists, a role says how to declare it rather than failing obscurely.

use std::process::Stdio;
use std::time::Duration;

use herald_amqp::{AmqpSettings, Connection, Consumer, Headers, Publisher, Topology};
use herald_core::Secret;
use herald_sim::SimConfig;
use serde_json::Value;

use crate::bench::{Metrics, free_addr};
use crate::{Running, broker, eventually, herald, herald_ok, unique_name};

const PAGE: &str = "1000000001";
const USERS: usize = 30;
/// The development passwords of definitions.json.
const PASSWORDS: [(&str, &str); 4] = [
    ("herald-admin", "dev-admin-password"),
    ("herald-producer", "dev-producer-password"),
    ("herald-worker", "dev-worker-password"),
    ("herald-serve", "dev-serve-password"),
];

#[tokio::test(flavor = "multi_thread")]
async fn each_role_does_its_job_and_nothing_else() {
    let Some(probe) = broker().await else {
        return;
    };
    drop(probe);
    let vhost = unique_name("test-roles");
    if !import_definitions(&vhost) {
        // rabbitmqctl cannot reach the broker (not local, or not root): the setup script always
        // can, so only a developer's own broker lands here.
        assert!(std::env::var_os("CI").is_none(), "rabbitmqctl unavailable");
        return;
    }
    let outcome =
        futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(roles(&vhost))).await;
    delete_vhost(&vhost);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn roles(vhost: &str) {
    let url = |user: &str| {
        let password = PASSWORDS
            .iter()
            .find(|(name, _)| *name == user)
            .map(|(_, password)| *password)
            .expect("a role");
        format!("amqp://{user}:{password}@127.0.0.1:5672/{vhost}")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());

    // Before the topology exists a role cannot make it, and says who can.
    let worker_url = url("herald-worker");
    let early = tokio::process::Command::from(herald(&[("HERALD_AMQP_URL", &worker_url)]))
        .args(["topology"])
        .output()
        .await
        .expect("run herald topology");
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(!early.status.success(), "{stderr}");
    assert!(
        stderr.contains("may not declare") && stderr.contains("herald topology"),
        "{stderr}"
    );
    assert!(!stderr.contains("dev-worker-password"), "{stderr}");
    herald_ok(
        dir.path(),
        &[("HERALD_AMQP_URL", &url("herald-admin"))],
        &["topology"],
    )
    .await;

    let sim = herald_sim::spawn(
        SimConfig {
            tokens: [(PAGE.to_owned(), "roles-token".to_owned())].into(),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let graph_url = sim.url();
    let token_var = format!("HERALD_PAGE_TOKEN_{PAGE}");
    let (serve_addr, worker_addr) = (free_addr(), free_addr());
    let serve_url = url("herald-serve");
    let _serve = start(
        &[
            ("HERALD_AMQP_URL", &serve_url),
            ("HERALD_DATABASE_URL", &database),
            ("HERALD_APP_SECRET", "roles-app-secret"),
            ("HERALD_VERIFY_TOKEN", "roles-verify-token"),
        ],
        &["serve", "--addr", &serve_addr],
        &dir.path().join("serve.log"),
    );
    let _worker = start(
        &[
            ("HERALD_AMQP_URL", &worker_url),
            ("HERALD_GRAPH_URL", &graph_url),
            (&token_var, "roles-token"),
        ],
        &["worker", "--metrics-addr", &worker_addr],
        &dir.path().join("worker.log"),
    );
    crate::write_campaign(dir.path(), ("roles", PAGE), USERS as u64, 3_000_000, "");
    let producer_url = url("herald-producer");
    herald_ok(
        dir.path(),
        &[
            ("HERALD_AMQP_URL", &producer_url),
            ("HERALD_DATABASE_URL", &database),
        ],
        &["campaign", "send", "campaign.toml"],
    )
    .await;
    let serve = Metrics::new(&serve_addr);
    let recorded = || async {
        serve
            .value("herald_results_recorded_total{status=\"sent\"}")
            .await
    };
    assert!(
        eventually(Duration::from_secs(60), || async {
            recorded().await == USERS as u64
        })
        .await,
        "serve recorded {} of {USERS} results; the simulator accepted {:?}\n{}",
        recorded().await,
        sim.stats().accepted,
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
    );
    assert_eq!(sim.stats().accepted, USERS as u64);
    sim.shutdown().await;

    let topology = Topology::default();
    let webhook_body = br#"{"object":"page","entry":[]}"#;
    for user in ["herald-worker", "herald-producer"] {
        let connection = connect(&url(user)).await;
        let refused = publish(&connection, &topology.events_exchange(), webhook_body).await;
        assert!(refused, "{user} published a webhook event");
        let _ = connection.close().await;
    }
    let worker = connect(&worker_url).await;
    let job = br#"{"v":1}"#;
    assert!(
        publish(&worker, &topology.jobs_exchange(), job).await,
        "a worker published a job"
    );
    let _ = worker.close().await;
    for user in ["herald-producer", "herald-serve"] {
        let connection = connect(&url(user)).await;
        let consumed = Consumer::start(&connection, &topology.send_queue(), 1).await;
        assert!(consumed.is_err(), "{user} consumed jobs");
        let _ = connection.close().await;
    }
}

/// Imports definitions.json with its vhost renamed to `vhost`; false when rabbitmqctl is
/// unavailable.
pub(crate) fn import_definitions(vhost: &str) -> bool {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/rabbitmq/definitions.json"
    );
    let text = std::fs::read_to_string(path).expect("definitions.json");
    let mut definitions: Value = serde_json::from_str(&text).expect("definitions are JSON");
    for list in ["vhosts", "permissions"] {
        for item in definitions[list].as_array_mut().expect(list) {
            let key = if list == "vhosts" { "name" } else { "vhost" };
            assert_eq!(item[key], "/", "definitions are for the default vhost");
            item[key] = Value::from(vhost);
        }
    }
    // The local broker's own guest stays as it is.
    definitions["users"]
        .as_array_mut()
        .expect("users")
        .retain(|user| user["name"] != "guest");
    let file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), definitions.to_string()).expect("write");
    // The broker's own user may read it, not only rabbitmqctl's.
    let readable = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(file.path(), readable).expect("chmod");
    let path = file.path().to_str().expect("utf-8 path");
    if !rabbitmqctl(&["import_definitions", path]) {
        return false;
    }
    // The import finishes in the background: wait until every role has its permissions.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let listed = std::process::Command::new("rabbitmqctl")
            .args(["list_permissions", "-q", "-p", vhost])
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default();
        if PASSWORDS.iter().all(|(user, _)| listed.contains(user)) {
            return rabbitmqctl(&["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the definitions were not imported within 30 s");
}

/// Deletes `vhost` with everything in it (cleanup).
pub(crate) fn delete_vhost(vhost: &str) {
    let _ = rabbitmqctl(&["delete_vhost", vhost]);
}

/// Runs `rabbitmqctl` with `args` on the test broker; whether it succeeded (what it said is
/// printed when not).
pub(crate) fn rabbitmqctl(args: &[&str]) -> bool {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(output) if output.status.success() => true,
        Ok(output) => {
            eprintln!(
                "rabbitmqctl {args:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            false
        }
        Err(error) => {
            eprintln!("rabbitmqctl {args:?}: {error}");
            false
        }
    }
}

/// Starts `herald ARGS`, its stderr to `log`.
fn start(settings: &[(&str, &str)], args: &[&str], log: &std::path::Path) -> Running {
    let mut command = herald(settings);
    let log = std::fs::File::create(log).expect("log file");
    command.args(args).stdout(Stdio::null()).stderr(log);
    Running(command.spawn().expect("start herald"))
}

async fn connect(url: &str) -> Connection {
    let settings = AmqpSettings {
        url: Secret::new(url),
        ..AmqpSettings::default()
    };
    herald_amqp::connect(&settings).await.expect("connect")
}

/// Whether publishing `body` to `exchange` was refused.
async fn publish(connection: &Connection, exchange: &str, body: &[u8]) -> bool {
    let Ok(publisher) = Publisher::open(connection, 1).await else {
        return true;
    };
    let outcome = match publisher
        .publish(exchange, "send", body, Headers::new())
        .await
    {
        Ok(confirm) => confirm.await.is_err(),
        Err(_) => true,
    };
    let _ = publisher.close().await;
    outcome
}
