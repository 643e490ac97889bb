//! A campaign on the 3-node test cluster (`scripts/services.sh`, `ensure_rabbitmq_cluster`:
//! herald-c1..3@localhost on 5681..5683) while the node every process connected to first is
//! stopped and started again: every process fails over to the next node of `HERALD_AMQP_URL`,
//! the quorum queues (replicated on all three nodes) keep every job, and every user gets exactly
//! one message and one `sent` result.

use std::time::{Duration, Instant};

use herald_tests::eventually;

use crate::fleet::{Fleet, Options, USERS, run_id};

/// The nodes' AMQP ports, in the order `HERALD_AMQP_URL` names them.
const PORTS: [u16; 3] = [5681, 5682, 5683];

/// `HERALD_AMQP_URL` for the cluster, or `None` (a failure under `CI`) when it is not running.
fn cluster_url() -> Option<String> {
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
fn ctl(node: usize, args: &[&str]) -> String {
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
struct Stopped(usize);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "-n", &format!("herald-c{}@localhost", self.0), "start_app"])
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

        let run = run_id(&fleet.herald_ok(&["campaign", "send", "campaign.toml"]).await);
        let reached = eventually(Duration::from_secs(120), || {
            let accepted = fleet.sim.stats().accepted;
            async move { accepted * 100 >= USERS * 30 }
        })
        .await;
        assert!(reached, "the run never reached 30 %");
        let at_stop = fleet.sim.stats().accepted;
        assert!(at_stop < USERS, "finished before the node was lost; grow USERS");
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
