//! The pipeline over the embedded broker (tests of the pipeline logic may use it; tests of delivery
//! guarantees use RabbitMQ, which survives a crash): the real producer publishes a messy segment,
//! the real worker sends to the simulator over HTTP, and every user ends with exactly one terminal
//! result on `<p>.results.store`: sent, sent after a retry tier (scripted `fail_first`), failed
//! (551), dead after its last attempt (with the job in `<p>.dead`), or skipped by the producer. The
//! retry tiers keep RabbitMQ's order but run 100 times faster (`ttl_divisor`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{
    AmqpSettings, Connection, Consumer, EmbeddedBroker, EmbeddedSettings, RetryTier, Topology,
};
use herald_core::campaign::Campaign;
use herald_core::{DeliveryResult, ResultStatus, Secret, SendJob};
use herald_graph::GraphSettings;
use herald_producer::{Progress, Run, SegmentInput, SendSpec};
use herald_sim::{PsidOutcome, PsidRule, SimConfig};
use herald_store::Store;
use herald_telemetry::{Health, Metrics};
use herald_worker::{Backoff, PageTokens, WorkerSettings};
use tokio_util::sync::CancellationToken;

const PAGE: &str = "1000000001";
const TOKEN: &str = "embedded-test-token";

const CAMPAIGN: &str = r#"
id = "embedded-test"
page_id = "1000000001"
messaging_type = "UPDATE"

[message]
text = "Hi {{ first_name | default: 'there' }}."

[delivery]
rate_per_sec = 200
max_attempts = 2
expires_after = "1h"
window = "enforce"
"#;

/// The users, their PSIDs and what must become of them.
fn segment() -> (String, BTreeMap<&'static str, Expect>) {
    let old = time::OffsetDateTime::now_utc() - time::Duration::days(2);
    let old = old
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let mut csv = String::from("external_id,messenger_id,first_name,last_inbound_at\n");
    let mut expected = BTreeMap::new();
    let ordinary = [
        ("u01", "1001"),
        ("u02", "1002"),
        ("u03", "1003"),
        ("u04", "1004"),
        ("u05", "1005"),
        ("u06", "1006"),
    ];
    for (id, psid) in ordinary {
        csv.push_str(&format!("{id},{psid},Ana,\n"));
        expected.insert(id, Expect::Sent { attempts: 1 });
    }
    csv.push_str("flaky,5520001,Bo,\n");
    expected.insert("flaky", Expect::Sent { attempts: 2 });
    csv.push_str("gone,5510001,Cy,\n");
    expected.insert("gone", Expect::Failed { code: 551 });
    csv.push_str("stuck,5530001,Di,\n");
    expected.insert("stuck", Expect::Dead { code: 1200 });
    csv.push_str("blank,,Ed,\n");
    expected.insert("blank", Expect::Skipped("blank_psid"));
    csv.push_str("spaces,   ,Fi,\n");
    expected.insert("spaces", Expect::Skipped("blank_psid"));
    csv.push_str(&format!("stale,1007,Gu,{old}\n"));
    expected.insert("stale", Expect::Skipped("outside_window"));
    // The second row of an external_id is skipped; the first (u01 above) is sent.
    csv.push_str("u01,1008,Dup,\n");
    (csv, expected)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Sent { attempts: u32 },
    Failed { code: u32 },
    Dead { code: u32 },
    Skipped(&'static str),
}

#[tokio::test]
async fn a_messy_segment_ends_with_one_result_per_user_over_the_embedded_broker() {
    messy_segment(CAMPAIGN, "embedded-pipeline").await;
}

/// The same through the priority lane: jobs arrive on `<p>.send.priority`, retried ones come
/// back through `<p>.send`, and every user still ends with exactly one result.
#[tokio::test]
async fn the_priority_lane_ends_the_same_way() {
    let campaign = CAMPAIGN.replace(
        "window = \"enforce\"",
        "window = \"enforce\"\npriority = \"high\"",
    );
    messy_segment(&campaign, "embedded-priority").await;
}

async fn messy_segment(campaign: &str, prefix: &str) {
    let broker = EmbeddedBroker::with_settings(EmbeddedSettings {
        ttl_divisor: 100,
        ..EmbeddedSettings::default()
    });
    let amqp = AmqpSettings::embedded(&broker);
    let topology = Topology::new(prefix).expect("prefix");
    let sim = herald_sim::spawn(
        SimConfig {
            tokens: [(PAGE.to_owned(), TOKEN.to_owned())].into(),
            throttle_regain_minutes: 0,
            psid_rules: vec![
                PsidRule::prefix("551", PsidOutcome::Unavailable),
                PsidRule::prefix("552", PsidOutcome::FailFirst),
                // Code 1200 is retried: with max_attempts 2 the job is dead after its second call.
                PsidRule::prefix(
                    "553",
                    PsidOutcome::Error {
                        code: 1200,
                        subcode: None,
                    },
                ),
            ],
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");

    let graph = GraphSettings {
        graph_url: sim.url(),
        request_timeout: Duration::from_secs(5),
        ..GraphSettings::default()
    };
    let tokens = PageTokens::new([(PAGE.to_owned(), Secret::new(TOKEN))].into());
    let mut settings = WorkerSettings::new(amqp.clone(), topology.clone(), graph, tokens);
    settings.concurrency = 8;
    // Every retry goes to the 5 s tier, which waits 50 ms on this broker.
    settings.backoff = Backoff {
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    let (metrics, shutdown) = (Metrics::new(), CancellationToken::new());
    let worker = tokio::spawn(herald_worker::run(
        settings,
        metrics.clone(),
        Health::default(),
        shutdown.clone(),
    ));

    let (csv, expected) = segment();
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.csv");
    std::fs::write(&users, csv).expect("segment");
    let store = Store::connect(&Secret::new("sqlite::memory:"))
        .await
        .expect("store");
    let spec = SendSpec {
        campaign: Arc::new(Campaign::from_toml(campaign).expect("campaign")),
        segment: SegmentInput::File(users),
        resume: None,
        strict: false,
        amqp: amqp.clone(),
        topology: topology.clone(),
        store,
        shared_link: None,
    };
    let run = Run::prepare(spec).await.expect("prepare");
    let run_id = run.run_id().to_owned();
    let record = run
        .execute(Arc::new(Progress::default()))
        .await
        .expect("run");
    assert_eq!(record.published, 9, "{record:?}");
    assert_eq!(
        record.skipped.values().sum::<u64>(),
        4,
        "{:?}",
        record.skipped
    );

    let connection = herald_amqp::connect(&amqp).await.expect("connect");
    // One result per user of `expected`, and the duplicate row's.
    let results = read(
        &connection,
        &topology.results_store_queue(),
        expected.len() + 1,
    )
    .await;
    let mut by_user: BTreeMap<String, DeliveryResult> = BTreeMap::new();
    let mut duplicates = 0;
    for body in &results {
        let result: DeliveryResult = serde_json::from_slice(body).expect("DeliveryResult v1");
        assert_eq!(result.run_id, run_id);
        if result.status == ResultStatus::Skipped && result.external_id == "u01" {
            duplicates += 1;
            continue;
        }
        let previous = by_user.insert(result.external_id.clone(), result.clone());
        assert!(previous.is_none(), "two results for {result:?}");
    }
    assert_eq!(
        duplicates, 1,
        "the repeated u01 row is skipped as a duplicate"
    );
    for (user, expect) in &expected {
        let result = by_user
            .get(*user)
            .unwrap_or_else(|| panic!("no result for {user}"));
        let error = result.error.as_ref();
        let code = error.and_then(|e| e.code);
        match *expect {
            Expect::Sent { attempts } => {
                assert_eq!(result.status, ResultStatus::Sent, "{result:?}");
                assert_eq!(result.attempts, attempts, "{result:?}");
                assert!(result.message_id.is_some(), "{result:?}");
            }
            Expect::Failed { code: want } => {
                assert_eq!((result.status, code), (ResultStatus::Failed, Some(want)));
                assert_eq!(result.attempts, 1, "a permanent error is not retried");
            }
            Expect::Dead { code: want } => {
                assert_eq!((result.status, code), (ResultStatus::Dead, Some(want)));
                assert_eq!(result.attempts, 2, "max_attempts calls: {result:?}");
            }
            Expect::Skipped(reason) => {
                assert_eq!(result.status, ResultStatus::Skipped, "{result:?}");
                let message = error.map_or("", |e| e.message.as_str());
                assert!(message.starts_with(reason), "{user}: {message}");
            }
        }
    }

    // The dead job waits in `<p>.dead` as the worker received it, with why and how often.
    let dead = read_deliveries(&connection, &topology.dead_queue(), 1).await;
    let (body, headers) = &dead[0];
    let job: SendJob = serde_json::from_slice(body).expect("the job, byte for byte");
    assert_eq!(job.external_id, "stuck");
    assert_eq!(headers.attempt(), Some(2));
    assert!(
        headers.reason().is_some_and(|r| r.contains("1200")),
        "{headers:?}"
    );

    // Graph saw each reachable user once; the flaky one's retry came back from the 5 s tier.
    let stats = sim.stats();
    let recipients = stats.recipients.clone().expect("recipients");
    assert_eq!(stats.duplicate_recipients.count, 0);
    assert_eq!(stats.accepted, 7, "{recipients:?}");
    assert_eq!(recipients.get("5520001"), Some(&1));
    assert_eq!(stats.rejected.get(&1200), Some(&2));
    let retries = metrics.encode();
    let tier = RetryTier::FiveSeconds.name();
    assert!(
        retries.contains(&format!(
            "herald_retries_scheduled_total{{tier=\"{tier}\"}} 2"
        )),
        "{retries}"
    );
    for queue in [
        topology.send_queue(),
        topology.priority_queue(),
        topology.retry_queue(RetryTier::FiveSeconds),
    ] {
        assert_eq!(
            connection.message_count(&queue).await.expect("count"),
            0,
            "{queue}"
        );
    }

    shutdown.cancel();
    worker
        .await
        .expect("worker task")
        .expect("worker stopped cleanly");
    sim.shutdown().await;
}

#[tokio::test]
async fn workers_on_one_embedded_broker_share_the_send_queue_and_the_control_log() {
    let broker = EmbeddedBroker::new();
    let amqp = AmqpSettings::embedded(&broker);
    let topology = Topology::new("embedded-fleet").expect("prefix");
    let sim = herald_sim::spawn(SimConfig::default(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let graph = GraphSettings {
        graph_url: sim.url(),
        ..GraphSettings::default()
    };
    let tokens = PageTokens::new([(PAGE.to_owned(), Secret::new(TOKEN))].into());
    let settings = WorkerSettings::new(amqp.clone(), topology.clone(), graph, tokens);
    let shutdown = CancellationToken::new();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(herald_worker::run(
                settings.clone(),
                Metrics::new(),
                Health::default(),
                shutdown.clone(),
            ))
        })
        .collect();
    let connection = herald_amqp::connect(&amqp).await.expect("connect");
    let send = topology.send_queue();
    let attached = crate::eventually(Duration::from_secs(10), || async {
        connection.consumer_count(&send).await.unwrap_or(0) == 3
    })
    .await;
    assert!(attached, "three workers consume the send queue");
    // Each worker announced itself on the control stream (a marker) and read it back.
    let log = topology.control_log_queue();
    assert!(connection.message_count(&log).await.expect("log") >= 3);
    shutdown.cancel();
    for worker in workers {
        worker.await.expect("task").expect("clean stop");
    }
    assert_eq!(connection.consumer_count(&send).await.expect("count"), 0);
    sim.shutdown().await;
}

/// Takes `count` message bodies from `queue` (acking them), failing after 30 s.
async fn read(connection: &Connection, queue: &str, count: usize) -> Vec<Vec<u8>> {
    read_deliveries(connection, queue, count)
        .await
        .into_iter()
        .map(|(body, _)| body)
        .collect()
}

async fn read_deliveries(
    connection: &Connection,
    queue: &str,
    count: usize,
) -> Vec<(Vec<u8>, herald_amqp::Headers)> {
    let mut consumer = Consumer::start(connection, queue, 100)
        .await
        .expect("consume");
    let mut taken = Vec::new();
    while taken.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(30), consumer.next()).await;
        let delivery = next
            .unwrap_or_else(|_| panic!("{} of {count} messages from {queue} in 30 s", taken.len()))
            .expect("consumer open")
            .expect("delivery");
        delivery.ack().await.expect("ack");
        taken.push((delivery.body().to_vec(), delivery.headers()));
    }
    taken
}
