//! Campaigns on the 3-node test cluster (`scripts/services.sh`, `ensure_rabbitmq_cluster`:
//! herald-c1..3@localhost on 5681..5683), where disturbing the broker touches no other test:
//! - the node every process connected to first is stopped and started again: every process
//!   fails over to the next node of `HERALD_AMQP_URL`, the quorum queues (replicated on all
//!   three nodes) keep every job, and every user gets exactly one message and one result;
//! - a memory alarm mid-run blocks publishing: the producer and the workers wait (and say so in
//!   `herald_broker_blocked`), the webhook answers 503 so Meta retries, a worker told to stop
//!   during it exits, and after the alarm clears everything finishes, every user sent once,
//!   and the webhook answers 200 again.

use std::time::{Duration, Instant};

use herald_tests::{eventually, sign_webhook};

use crate::fleet::{APP_SECRET, Fleet, Options, USERS, run_id, sample};

/// The nodes' AMQP ports, in the order `HERALD_AMQP_URL` names them.
const PORTS: [u16; 3] = [5681, 5682, 5683];

/// `HERALD_AMQP_URL` for the cluster, or `None` (a failure under `CI`) when it is not running.
pub(crate) fn cluster_url() -> Option<String> {
    let up = PORTS
        .iter()
        .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
    if !up {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the test cluster is not running on 5681..5683; run scripts/test"
        );
        eprintln!("skipping: no test cluster (bash scripts/services.sh rabbitmq_cluster)");
        return None;
    }
    let urls: Vec<String> = PORTS
        .iter()
        .map(|port| format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
        .collect();
    Some(urls.join(","))
}

/// `rabbitmqctl -n herald-c<node>@localhost ARGS`, which must succeed; its stdout.
pub(crate) fn ctl(node: usize, args: &[&str]) -> String {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "-n", &format!("herald-c{node}@localhost")])
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} on node {node}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The start of a node's RabbitMQ application, undone even when the test fails.
pub(crate) struct Stopped(pub(crate) usize);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args([
                "-q",
                "-n",
                &format!("herald-c{}@localhost", self.0),
                "start_app",
            ])
            .status();
    }
}

#[tokio::test]
async fn a_campaign_survives_losing_the_node_it_started_on() {
    let _serial = crate::SERIAL.lock().await;
    let Some(url) = cluster_url() else {
        return;
    };
    herald_tests::postgres::in_new_schema(|database| async move {
        let options = Options {
            amqp_url: Some(url),
            ..Options::new("test-cluster-failover", database)
        };
        let Some(fleet) = Fleet::start(options).await else {
            return;
        };
        // Every queue of the topology has a member on each node.
        let send_queue = fleet.topology.send_queue();
        let members = ctl(1, &["list_queues", "name", "members", "--no-table-headers"]);
        let line = members
            .lines()
            .find(|line| line.split_whitespace().next() == Some(send_queue.as_str()))
            .unwrap_or_else(|| panic!("{send_queue} not listed:\n{members}"));
        for node in 1..=3 {
            assert!(
                line.contains(&format!("herald-c{node}@localhost")),
                "{send_queue} has no member on node {node}: {line}"
            );
        }

        let run = run_id(
            &fleet
                .herald_ok(&["campaign", "send", "campaign.toml"])
                .await,
        );
        let reached = eventually(Duration::from_secs(120), || {
            let accepted = fleet.sim.stats().accepted;
            async move { accepted * 100 >= USERS * 30 }
        })
        .await;
        assert!(reached, "the run never reached 30 %");
        let at_stop = fleet.sim.stats().accepted;
        assert!(
            at_stop < USERS,
            "finished before the node was lost; grow USERS"
        );
        let stopped_at = Instant::now();
        ctl(1, &["stop_app"]);
        let node = Stopped(1);
        let recovered = eventually(Duration::from_secs(120), || {
            let accepted = fleet.sim.stats().accepted;
            async move { accepted >= (at_stop + 1_000).min(USERS) }
        })
        .await;
        assert!(recovered, "sending never resumed after the node was lost");
        let recovery = stopped_at.elapsed();
        eprintln!(
            "node 1 stopped at {at_stop} accepted; 1,000 more accepted {:.1} s later",
            recovery.as_secs_f64()
        );
        drop(node);
        fleet.expect_everyone_once(&run).await;
        fleet.stop().await;
    })
    .await;
}

/// A memory alarm on the cluster (a watermark no node can stay under), cleared when dropped.
pub(crate) struct Alarm;

impl Alarm {
    pub(crate) fn raise() -> Self {
        ctl(1, &["set_vm_memory_high_watermark", "0.0001"]);
        Self
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args([
                "-q",
                "-n",
                "herald-c1@localhost",
                "set_vm_memory_high_watermark",
                "0.4",
            ])
            .status();
    }
}

/// A signed webhook POST of one inbound message to serve; the HTTP status.
async fn webhook_status(serve_url: &str) -> u16 {
    let body = serde_json::to_vec(&serde_json::json!({
        "object": "page",
        "entry": [{"id": crate::fleet::PAGE, "time": 1, "messaging": [{
            "sender": {"id": "9900000000000001"},
            "recipient": {"id": crate::fleet::PAGE},
            "timestamp": 1,
            "message": {"mid": format!("m_alarm_{}", herald_tests::unique_name("m")), "text": "hi"}
        }]}]
    }))
    .expect("json");
    let signature = sign_webhook(APP_SECRET, &body);
    reqwest::Client::new()
        .post(format!("{serve_url}/webhook"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .map_or(0, |response| response.status().as_u16())
}

#[tokio::test]
async fn a_memory_alarm_pauses_a_campaign_and_loses_nothing() {
    let _serial = crate::SERIAL.lock().await;
    let Some(url) = cluster_url() else {
        return;
    };
    herald_tests::postgres::in_new_schema(|database| async move {
        let options = Options {
            amqp_url: Some(url),
            // The producer publishes about 8,000 jobs a second here and raising the alarm
            // (`rabbitmqctl` starting up) takes 1.5 s: the run must outlast that many times over.
            users: 80_000,
            ..Options::new("test-cluster-alarm", database.clone())
        };
        let Some(mut fleet) = Fleet::start(options).await else {
            return;
        };
        assert_eq!(
            webhook_status(&fleet.serve_url).await,
            200,
            "before the alarm"
        );
        let store = herald_store::Store::connect(&database)
            .await
            .expect("store");
        let (mut producer, run) = fleet.producer(&[]);
        let going = fleet.published(&store, &run, 1).await;
        assert!(going, "the producer never got going");

        let raising = Instant::now();
        let alarm = Alarm::raise();
        let blocked = eventually(Duration::from_secs(30), || async {
            sample(&fleet.worker_metrics(0).await, "herald_broker_blocked") == Some(1.0)
                && sample(&fleet.serve_metrics().await, "herald_broker_blocked") == Some(1.0)
        })
        .await;
        assert!(blocked, "herald_broker_blocked never showed the alarm");
        assert_eq!(
            webhook_status(&fleet.serve_url).await,
            503,
            "during the alarm"
        );
        let record = store.load_run(&run).await.expect("load").expect("run");
        eprintln!(
            "blocked {:.1} s after raising the alarm, {} of {} published",
            raising.elapsed().as_secs_f64(),
            record.progress.published,
            fleet.users
        );
        assert!(
            !record.progress.complete,
            "the producer finished before the alarm; grow users"
        );
        // Everyone waits: nothing exits, nothing errors.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            producer.try_wait().expect("status").is_none(),
            "the producer gave up during the alarm"
        );
        // A worker told to stop during the alarm stops: the broker reads nothing more from its
        // connection, so its last results and its closing frames go unanswered and it leaves
        // without them once its grace is over; its unacked jobs go to the others.
        let terminating = Instant::now();
        assert!(
            fleet.terminate_worker(2).await,
            "a worker did not exit 0 on SIGTERM during the alarm"
        );
        eprintln!(
            "worker 2 exited {:.1} s after SIGTERM during the alarm",
            terminating.elapsed().as_secs_f64()
        );
        let cleared_at = Instant::now();
        drop(alarm);
        let unblocked = eventually(Duration::from_secs(30), || async {
            sample(&fleet.worker_metrics(0).await, "herald_broker_blocked") == Some(0.0)
        })
        .await;
        assert!(unblocked, "herald_broker_blocked never cleared");
        eprintln!(
            "publishing unblocked {:.1} s after the alarm cleared",
            cleared_at.elapsed().as_secs_f64()
        );
        let status = tokio::task::spawn_blocking(move || producer.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(status.success(), "the producer exit status {status}");
        fleet.expect_everyone_once(&run).await;
        let accepted = eventually(Duration::from_secs(30), || async {
            webhook_status(&fleet.serve_url).await == 200
        })
        .await;
        assert!(accepted, "the webhook never answered 200 after the alarm");
        store.close().await;
        fleet.stop().await;
    })
    .await;
}
