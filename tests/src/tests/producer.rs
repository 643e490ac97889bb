//! The producer against the real broker, through the real binary: exact jobs and skipped results
//! for a messy segment, validation errors that publish nothing, and a producer killed or
//! interrupted mid-run and resumed with no gap.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

use herald_amqp::{AmqpSettings, Topology};
use serde_json::Value;

use crate::{broker, drain, eventually, herald, unique_name};

const CAMPAIGN: &str = herald_core::campaign::EXAMPLE_TOML;

struct Fixture {
    dir: tempfile::TempDir,
    prefix: String,
    topology: Topology,
    settings: AmqpSettings,
}

impl Fixture {
    fn new(segment: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("campaign.toml"), CAMPAIGN).expect("campaign");
        std::fs::write(dir.path().join("users.csv"), segment).expect("segment");
        let prefix = unique_name("test-producer");
        let topology = Topology::new(&prefix).expect("topology");
        let settings = AmqpSettings {
            url: crate::amqp_addr().into(),
            ..AmqpSettings::default()
        };
        Self {
            dir,
            prefix,
            topology,
            settings,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .to_str()
            .expect("utf-8")
            .to_owned()
    }

    fn herald(&self) -> std::process::Command {
        let database = format!("sqlite://{}", self.path("herald.db"));
        let mut command = herald(&[
            ("HERALD_TOPOLOGY_PREFIX", &self.prefix),
            ("HERALD_DATABASE_URL", &database),
        ]);
        command.current_dir(self.dir.path());
        command
    }

    async fn cleanup(&self) {
        let connection = herald_amqp::connect(&self.settings).await.expect("connect");
        self.topology
            .delete(&connection)
            .await
            .expect("delete topology");
        let _ = connection.close().await;
    }
}

fn run_ok(command: &mut std::process::Command) -> String {
    let output = command.output().expect("run herald");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "herald failed ({}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn run_id(stdout: &str) -> String {
    stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("run_id: "))
        .expect("run id first")
        .to_owned()
}

fn json(bodies: &[Vec<u8>]) -> Vec<Value> {
    bodies
        .iter()
        .map(|b| serde_json::from_slice(b).expect("JSON message"))
        .collect()
}

#[tokio::test]
async fn a_messy_segment_becomes_exact_jobs_and_skipped_results() {
    let Some(connection) = broker().await else {
        return;
    };
    let recent = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let old = time::OffsetDateTime::now_utc() - time::Duration::days(3);
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    };
    let segment = format!(
        "external_id,messenger_id,first_name,promo_code,country,last_inbound_at,opted_out\n\
         u1,1001,Zoë,Z1,BR,{recent},\n\
         u2,,Bo,B2,BR,,\n\
         u3,1003,,C3,BR,,false\n\
         u1,1004,Dup,D4,BR,,\n\
         this row is broken\n\
         u5,1005,Ana,E5,BR,{old},\n\
         u6,1006,名前,F6,PT,,\n\
         u7,   ,Ws,G7,BR,,\n\
         u9,1009,Op,I9,BR,,true\n\
         u8,1008,\"Ελένη \"\"q\"\" \\ 😀\",H8,BR,,\n",
        recent = rfc(recent),
        old = rfc(old)
    );
    let fixture = Fixture::new(&segment);
    let stdout = run_ok(fixture.herald().args(["campaign", "send", "campaign.toml"]));
    let run = run_id(&stdout);
    for line in [
        "published: 3",
        "skipped.blank_psid: 2",
        "skipped.duplicate: 1",
        "skipped.outside_window: 1",
        "malformed: 1",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?} in\n{stdout}"
        );
    }

    let bodies = drain(&connection, &fixture.topology.send_queue()).await;
    let jobs = json(&bodies);
    // Read through the wire type so the request's bytes are compared exactly as published.
    let requests: Vec<String> = bodies
        .iter()
        .map(|b| {
            serde_json::from_slice::<herald_core::SendJob>(b)
                .expect("SendJob v1")
                .request
                .get()
                .to_owned()
        })
        .collect();
    let expected = [
        ("u1", "1001", "Hi Zoë, your code is Z1."),
        ("u3", "1003", "Hi there, your code is C3."),
        ("u8", "1008", "Hi Ελένη \\\"q\\\" \\\\ 😀, your code is H8."),
    ];
    let expected_requests: Vec<String> = expected
        .iter()
        .map(|(id, psid, text)| {
            format!(
                "{{\"recipient\":{{\"id\":\"{psid}\"}},\"messaging_type\":\"UPDATE\",\"message\":{{\"text\":\"{text}\",\"metadata\":\"{run}:{id}\"}}}}"
            )
        })
        .collect();
    assert_eq!(requests, expected_requests);
    for (job, (id, _, _)) in jobs.iter().zip(expected) {
        assert_eq!(job["v"], 1);
        assert_eq!(job["job_id"], format!("{run}:{id}"));
        assert_eq!(
            (job["run_id"].as_str(), job["campaign_id"].as_str()),
            (Some(run.as_str()), Some("welcome-back"))
        );
        assert_eq!(
            (job["page_id"].as_str(), job["external_id"].as_str()),
            (Some("1000000001"), Some(id))
        );
        assert_eq!(
            (job["rate_per_sec"].as_u64(), job["max_attempts"].as_u64()),
            (Some(250), Some(5))
        );
        let at = |key: &str| {
            time::OffsetDateTime::parse(
                job[key].as_str().expect("time"),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("RFC 3339")
        };
        assert_eq!(
            at("not_after") - at("enqueued_at"),
            time::Duration::hours(6)
        );
    }

    let results = json(&drain(&connection, &fixture.topology.results_store_queue()).await);
    let mut skipped: BTreeMap<String, String> = BTreeMap::new();
    for result in &results {
        assert_eq!(result["status"], "skipped");
        assert_eq!(result["attempts"], 0);
        let reason = result["error"]["message"].as_str().expect("reason");
        let label = reason.split(':').next().expect("label").to_owned();
        skipped.insert(
            result["job_id"].as_str().expect("job id").to_owned() + "/" + &label,
            label,
        );
    }
    let keys: BTreeSet<&str> = skipped.keys().map(String::as_str).collect();
    let expected_keys: BTreeSet<String> = [
        "u2/blank_psid",
        "u1/duplicate",
        "u5/outside_window",
        "u7/blank_psid",
        "u9/opted_out",
    ]
    .iter()
    .map(|k| format!("{run}:{k}"))
    .collect();
    assert_eq!(keys, expected_keys.iter().map(String::as_str).collect());
    fixture.cleanup().await;
}

#[tokio::test]
async fn invalid_campaigns_publish_nothing() {
    let Some(_connection) = broker().await else {
        return;
    };
    let fixture = Fixture::new("external_id,messenger_id,country\nu1,1,BR\n");
    run_ok(fixture.herald().arg("topology"));
    let bad = [
        (
            "unknown key",
            CAMPAIGN.replace("match = \"all\"", "match = \"all\"\nlimit = 3"),
            64,
        ),
        (
            "retired tag",
            CAMPAIGN.replace("\"UPDATE\"", "\"MESSAGE_TAG\"\ntag = \"ACCOUNT_UPDATE\""),
            65,
        ),
        (
            "liquid syntax",
            CAMPAIGN.replace("{{ promo_code }}", "{{ promo_code "),
            65,
        ),
        (
            "bad duration",
            CAMPAIGN.replace("\"6h\"", "\"six hours\""),
            65,
        ),
    ];
    for (what, text, code) in bad {
        std::fs::write(fixture.path("bad.toml"), text).expect("write");
        let output = fixture
            .herald()
            .args(["campaign", "send", "bad.toml"])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{what}: {stderr}");
        assert!(stderr.contains("nothing was published"), "{what}: {stderr}");
        assert!(output.stdout.is_empty(), "{what}: printed a run id");
    }
    let connection = herald_amqp::connect(&fixture.settings)
        .await
        .expect("connect");
    assert_eq!(
        connection
            .message_count(&fixture.topology.send_queue())
            .await
            .expect("count"),
        0
    );
    assert_eq!(
        connection
            .message_count(&fixture.topology.results_store_queue())
            .await
            .expect("count"),
        0
    );
    let _ = connection.close().await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_killed_producer_resumes_with_no_gap() {
    stopped_producer_resumes_with_no_gap(Stop::Kill).await;
}

/// Ctrl-C: the producer exits 130, saying how to resume, and the run says it stopped until
/// the resume.
#[tokio::test]
async fn an_interrupted_producer_says_so_on_its_run_and_resumes_with_no_gap() {
    stopped_producer_resumes_with_no_gap(Stop::Interrupt).await;
}

/// How the producer is stopped mid-run.
#[derive(PartialEq)]
enum Stop {
    /// SIGKILL: a crash.
    Kill,
    /// SIGINT: an operator's Ctrl-C.
    Interrupt,
}

async fn stopped_producer_resumes_with_no_gap(stop: Stop) {
    let Some(connection) = broker().await else {
        return;
    };
    const USERS: usize = 20_000;
    let mut segment = String::from("external_id,messenger_id,first_name,promo_code,country\n");
    for i in 0..USERS {
        segment.push_str(&format!("u{i},{},N{i},P{i},BR\n", 10_000_000 + i));
    }
    let fixture = Fixture::new(&segment);
    let mut child = fixture
        .herald()
        .args(["campaign", "send", "campaign.toml"])
        .stdout(Stdio::piped())
        .stderr(match stop {
            Stop::Kill => Stdio::null(),
            Stop::Interrupt => Stdio::piped(),
        })
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("run id line");
    let run = run_id(&first);
    let amqp = herald_amqp::connect(&fixture.settings)
        .await
        .expect("connect");
    let queue = fixture.topology.send_queue();
    let started = eventually(Duration::from_secs(60), || async {
        amqp.message_count(&queue).await.unwrap_or(0) >= 2_000
    })
    .await;
    assert!(started, "the producer never got going");
    assert!(
        child.try_wait().expect("status").is_none(),
        "finished before it could be killed; grow USERS"
    );
    let store = herald_store::Store::connect(&herald_core::Secret::new(format!(
        "sqlite://{}",
        fixture.path("herald.db")
    )))
    .await
    .expect("store");
    if stop == Stop::Kill {
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    } else {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(sent.success());
        let mut stderr = String::new();
        let _ = child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr);
        let status = child.wait().expect("reap");
        assert_eq!(status.code(), Some(130), "{stderr}");
        assert!(stderr.contains(&format!("--resume {run}")), "{stderr}");
        let record = store.load_run(&run).await.expect("load").expect("run");
        assert_eq!(
            record.producer_stopped.as_deref(),
            Some("herald campaign send was interrupted"),
            "{record:?}"
        );
        assert!(!record.progress.complete, "{record:?}");
    }
    let before = amqp.message_count(&queue).await.expect("count") as usize;
    assert!(before < USERS, "all {before} published before the stop");

    let stdout =
        run_ok(
            fixture
                .herald()
                .args(["campaign", "send", "campaign.toml", "--resume", &run]),
        );
    assert_eq!(run_id(&stdout), run, "resume keeps the run id");
    let jobs = json(&drain(&connection, &queue).await);
    let ids: BTreeSet<String> = jobs
        .iter()
        .map(|j| j["job_id"].as_str().expect("id").to_owned())
        .collect();
    let expected: BTreeSet<String> = (0..USERS).map(|i| format!("{run}:u{i}")).collect();
    assert_eq!(ids.len(), USERS, "distinct jobs after resume");
    assert_eq!(ids, expected, "every eligible user has a job");
    // Only what the last saved checkpoint did not cover may be published twice.
    let duplicates = jobs.len() - ids.len();
    let bound =
        AmqpSettings::default().confirm_window + herald_producer::CHECKPOINT_EVERY_ROWS as usize;
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than {bound}"
    );
    let record = store.load_run(&run).await.expect("load").expect("run");
    assert!(record.progress.complete, "{record:?}");
    assert_eq!(
        record.producer_stopped, None,
        "the resume clears why it stopped"
    );
    assert_eq!(record.progress.published, USERS as u64);
    let _ = amqp.close().await;
    fixture.cleanup().await;
}

/// A RESPONSE campaign (high priority unless its file says otherwise) publishes every job to
/// the priority lane, each marked so a retried copy keeps its place at the page's limiter; the
/// bulk queue gets none.
#[tokio::test]
async fn a_response_campaign_publishes_to_the_priority_lane() {
    use futures_util::StreamExt;
    let Some(connection) = broker().await else {
        return;
    };
    let fixture = Fixture::new("external_id,messenger_id,country\nu1,1001,BR\nu2,1002,BR\n");
    let campaign = CAMPAIGN
        .replace("\"UPDATE\"", "\"RESPONSE\"")
        .replace("priority = \"normal\"", "");
    std::fs::write(fixture.path("campaign.toml"), campaign).expect("campaign");
    let stdout = run_ok(fixture.herald().args(["campaign", "send", "campaign.toml"]));
    assert!(stdout.lines().any(|l| l == "published: 2"), "{stdout}");
    let queue = fixture.topology.priority_queue();
    let mut consumer = herald_amqp::Consumer::start(&connection, &queue, 10)
        .await
        .expect("consume");
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("a priority job")
            .expect("delivery")
            .expect("delivery");
        assert!(delivery.headers().is_high_priority());
        let job: herald_core::SendJob =
            serde_json::from_slice(delivery.body()).expect("SendJob v1");
        assert_eq!(job.campaign_id, "welcome-back");
        delivery.ack().await.expect("ack");
    }
    let _ = consumer.close().await;
    let bulk = connection
        .message_count(&fixture.topology.send_queue())
        .await
        .expect("count");
    assert_eq!(bulk, 0, "a priority job went to the bulk queue");
    fixture.cleanup().await;
}
