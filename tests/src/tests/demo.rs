//! `herald demo` and `herald run` as a user runs them: the real binary. The demo's summary must
//! add up (sent + failed + skipped = every user of the sample, skipped by reason as the sample
//! was written), over the embedded queue and once through RabbitMQ with worker processes; and
//! `herald run` against an in-process simulator sends exactly the messages the simulator
//! records, one per reachable user, rendered per user.

use std::collections::BTreeMap;
use std::process::Output;

use herald_sim::{PsidOutcome, PsidRule, SimConfig};

use herald_amqp::AmqpError;

use crate::{broker, herald};

/// The number in the summary row whose label is `label` (`  sent    9,675`).
fn row(stdout: &str, label: &str) -> Option<u64> {
    stdout.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(label)?;
        let number = rest.trim().replace(',', "");
        number.parse().ok()
    })
}

/// Every outcome row of the summary table, between its header and `total`.
fn outcomes(stdout: &str) -> BTreeMap<String, u64> {
    let mut rows = BTreeMap::new();
    let mut inside = false;
    for line in stdout.lines() {
        let line = line.trim();
        if line.starts_with("outcome") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if line.starts_with("total") || line.is_empty() {
            break;
        }
        let (label, number) = line.rsplit_once(' ').expect("label and number");
        let number = number.replace(',', "").parse().expect("a count");
        rows.insert(label.trim().to_owned(), number);
    }
    rows
}

fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "herald failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The checks both demo variants share; the sample has `users` users of which every 400th
/// (from the 8th) has a blank PSID, every 50th (from the 4th) wrote 3 days ago, every 100th
/// (from the 12th) is unreachable and every 100th (from the 43rd) fails once.
fn check_summary(stdout: &str, users: u64) {
    let count = |step: u64, first: u64| (0..users).filter(|i| i % step == first).count() as u64;
    let (blank, stale, unreachable, flaky) =
        (count(400, 7), count(50, 3), count(100, 11), count(100, 42));
    let rows = outcomes(stdout);
    let expected: BTreeMap<String, u64> = [
        ("sent".to_owned(), users - blank - stale - unreachable),
        ("failed (code 551)".to_owned(), unreachable),
        ("skipped: blank_psid".to_owned(), blank),
        ("skipped: outside_window".to_owned(), stale),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    assert_eq!(rows, expected, "{stdout}");
    assert_eq!(rows.values().sum::<u64>(), users, "{stdout}");
    assert_eq!(row(stdout, "total"), Some(users), "{stdout}");
    let retried = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("retried"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse::<u64>().ok());
    assert_eq!(retried, Some(flaky), "{stdout}");
    for line in [
        "achieved rate",
        "busiest second",
        "send latency",
        "Try next",
    ] {
        assert!(stdout.contains(line), "no {line:?} in\n{stdout}");
    }
    assert!(
        stdout.contains("p50 ") && stdout.contains("p99 "),
        "{stdout}"
    );
}

#[test]
fn the_demo_adds_up_over_the_embedded_queue() {
    // `herald()` sets HERALD_AMQP_URL: only the `--amqp` flag may move the demo to RabbitMQ.
    let dir = tempfile::tempdir().expect("temp dir");
    let output = herald(&[])
        .args(["demo", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run herald demo");
    let stdout = succeeded(&output);
    assert!(stdout.contains("through the embedded queue"), "{stdout}");
    check_summary(&stdout, 10_000);
    assert_eq!(row(&stdout, "sent"), Some(9_675), "{stdout}");
    // The launch check: 9,975 people with a PSID, 200 calls each a day; 9,775 jobs (the 200
    // outside the window are skipped) at 980/s take 10 s.
    assert!(
        stdout.contains(
            "Daily budget: page 1000000001 may make 1,995,000 calls in 24 h (200 × 9,975 \
             engaged users); this campaign needs 9,775 (0.49 %), about 10s at 980/s."
        ),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_demo_adds_up_through_rabbitmq_with_worker_processes() {
    let Some(connection) = broker().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = herald(&[]);
    command
        .args(["--amqp", &crate::amqp_addr()])
        .args(["demo", "--users", "2000", "--rate-per-sec", "400", "--dir"])
        .arg(dir.path());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run herald demo --amqp");
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("through RabbitMQ (2 worker(s))"),
        "{stdout}"
    );
    check_summary(&stdout, 2_000);
    // The demo's queues are gone afterwards.
    let prefix = stdout
        .lines()
        .find_map(|l| l.split("queues ").nth(1)?.split(".*").next())
        .expect("the demo names its queues");
    let send = format!("{prefix}.send");
    let found = connection.message_count(&send).await;
    assert!(
        matches!(found, Err(AmqpError::QueueMissing { .. })),
        "{send} was left behind: {found:?}"
    );
}

#[tokio::test]
async fn herald_run_sends_exactly_what_the_simulator_records() {
    const PAGE: &str = "1000000001";
    let sim = herald_sim::spawn(
        SimConfig {
            tokens: [(PAGE.to_owned(), "run-token".to_owned())].into(),
            psid_rules: vec![PsidRule::prefix("551", PsidOutcome::Unavailable)],
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let campaign = format!(
        "id = \"run-test\"\npage_id = \"{PAGE}\"\nmessaging_type = \"UPDATE\"\n\
         [message]\ntext = \"Hi {{{{ first_name | default: 'there' }}}}!\"\n\
         [segment]\nfile = \"users.csv\"\n"
    );
    std::fs::write(dir.path().join("campaign.toml"), campaign).expect("campaign");
    let users = [
        ("a", "2001", "Ana"),
        ("b", "2002", ""),
        ("c", "5510003", "Cy"),
        ("d", "", "Di"),
        ("e", "2005", "Zoë"),
    ];
    let mut csv = String::from("external_id,messenger_id,first_name\n");
    for (id, psid, name) in users {
        csv.push_str(&format!("{id},{psid},{name}\n"));
    }
    let segment = dir.path().join("users.csv");
    std::fs::write(&segment, csv).expect("segment");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let graph_url = sim.url();
    let token_var = format!("HERALD_PAGE_TOKEN_{PAGE}");
    let mut command = herald(&[
        ("HERALD_GRAPH_URL", graph_url.as_str()),
        (token_var.as_str(), "run-token"),
        ("HERALD_DATABASE_URL", database.as_str()),
    ]);
    command
        .args(["run", "campaign.toml", "--segment"])
        .arg(&segment)
        .args(["--workers", "2", "--concurrency", "4"])
        .current_dir(dir.path());
    // Off the runtime's thread: the simulator answers on it while `herald run` sends.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run herald run");
    let stdout = succeeded(&output);
    for line in [
        "published: 4",
        "skipped.blank_psid: 1",
        "sent: 3",
        "failed: 1",
        "failed.551: 1",
        "skipped: 1",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in\n{stdout}"
        );
    }
    let stats = sim.stats();
    assert_eq!(stats.accepted, 3, "{stats:?}");
    assert_eq!(stats.duplicate_recipients.count, 0);
    for (psid, text) in [
        ("2001", "Hi Ana!"),
        ("2002", "Hi there!"),
        ("2005", "Hi Zoë!"),
    ] {
        let messages = sim.messages(psid);
        assert_eq!(messages.len(), 1, "{psid}: {messages:?}");
        assert_eq!(messages[0].body["message"]["text"], text, "{psid}");
    }
    assert!(sim.messages("5510003").is_empty());

    // The run's results reached the store, so `campaign status` reports it as it would a
    // RabbitMQ run.
    let run_id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("run_id: "))
        .expect("run id");
    let status = herald(&[("HERALD_DATABASE_URL", database.as_str())])
        .args(["campaign", "status", run_id, "--json"])
        .output()
        .expect("run herald campaign status");
    assert!(status.status.success(), "{status:?}");
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(report["results"]["total"], 5, "{report}");
    assert_eq!(report["results"]["sent"], 3, "{report}");
    assert_eq!(report["results"]["failed"], 1, "{report}");
    assert_eq!(report["results"]["skipped"], 1, "{report}");
    assert_eq!(report["pending"], 0, "{report}");
    sim.shutdown().await;
}

#[test]
fn herald_run_refuses_what_cannot_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("campaign.toml"),
        herald_core::campaign::EXAMPLE_TOML,
    )
    .expect("campaign");
    std::fs::write(
        dir.path().join("users.csv"),
        "external_id,messenger_id\nu1,1\n",
    )
    .expect("segment");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut settings = vec![("HERALD_DATABASE_URL", database.as_str())];
        settings.extend_from_slice(env);
        herald(&settings)
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run herald")
    };
    let no_token = run(&["run", "campaign.toml"], &[]);
    assert_eq!(no_token.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&no_token.stderr);
    assert!(stderr.contains("HERALD_PAGE_TOKEN_1000000001"), "{stderr}");
    let token = [("HERALD_PAGE_TOKEN_1000000001", "t")];
    let amqp = run(
        &["--amqp", "amqp://127.0.0.1:1/%2f", "run", "campaign.toml"],
        &token,
    );
    assert_eq!(amqp.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&amqp.stderr);
    assert!(stderr.contains("herald campaign send"), "{stderr}");
    let missing = run(&["run", "nope.toml"], &token);
    assert_eq!(missing.status.code(), Some(66));
    let zero = run(&["demo", "--users", "0", "--dir", "sample"], &[]);
    assert_eq!(zero.status.code(), Some(2));
}
