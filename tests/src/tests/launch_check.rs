//! The launch check of `herald campaign send`: the dry run's daily budget figures, computed
//! here by hand (Graph's budget is 200 calls × engaged users a day; the workers pace a page at
//! 98 % of min(ceiling, campaign rate)); the store's count of people the page can message as
//! the engaged users and its results as the calls already made today; and a real send over the
//! budget refused with exit 65 and nothing published, unless `--over-budget`.

use herald_amqp::{AmqpSettings, Topology};

use crate::{broker, herald, herald_ok, unique_name, write_campaign};

const PAGE: &str = "1000000001";
const USERS: u64 = 3_000;

/// A directory with `campaign.toml` (3,000 users, 100/s) and its own SQLite store.
fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("dir");
    write_campaign(
        dir.path(),
        ("launch", PAGE),
        USERS,
        24_000_000_000,
        "[delivery]\nrate_per_sec = 100\n",
    );
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    (dir, database)
}

fn lines_with<'a>(stdout: &'a str, prefix: &str) -> Vec<&'a str> {
    stdout.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[tokio::test]
async fn the_dry_run_shows_the_budget_the_campaign_uses_and_the_time_it_takes() {
    let (dir, database) = setup();
    let env = [
        ("HERALD_DATABASE_URL", database.as_str()),
        ("HERALD_PAGE_RATE_PER_SEC", "250"),
    ];
    // Ten engaged users: 2,000 calls a day, 1,000 fewer than the campaign's 3,000. The page's
    // rate is the campaign's 100/s (under the ceiling of 250), paced at 98/s: 3,000 / 98 =
    // 30.6 s, so 31 s; at --rate 50, 49/s: 61.2 s, so 1m2s.
    let args = [
        "campaign",
        "send",
        "campaign.toml",
        "--dry-run",
        "--engaged-users",
        "10",
        "--rate",
        "50",
    ];
    let stdout = herald_ok(dir.path(), &env, &args).await;
    assert!(stdout.contains("audience (jobs): 3000\n"), "{stdout}");
    assert_eq!(
        lines_with(&stdout, "daily budget:"),
        [format!(
            "daily budget: 2,000 calls per 24 h for page {PAGE} (200 × 10 engaged users, \
             --engaged-users)"
        )],
        "{stdout}"
    );
    assert_eq!(
        lines_with(&stdout, "used in the last 24 h:"),
        ["used in the last 24 h: not counted (there is no store yet (HERALD_DATABASE_URL))"]
    );
    assert_eq!(
        lines_with(&stdout, "campaign calls:"),
        ["campaign calls: 3,000 (one per job; retries come on top)"]
    );
    assert_eq!(
        lines_with(&stdout, "left after it:"),
        ["left after it: none, 1,000 over"]
    );
    assert_eq!(
        lines_with(&stdout, "send time"),
        [
            "send time: 31s at 98/s (98 % of 100/s, the lower of the page's ceiling 250/s and \
             the campaign's rate_per_sec 100)",
            "send time at --rate 50: 1m2s at 49/s",
        ]
    );
    assert!(
        !dir.path().join("herald.db").exists(),
        "a dry run with --engaged-users does not create a store"
    );
    // Without the flag and without a store, the budget is unknown, and said why.
    let args = ["campaign", "send", "campaign.toml", "--dry-run"];
    let stdout = herald_ok(dir.path(), &env, &args).await;
    assert!(
        stdout.contains("daily budget: unknown (there is no store yet (HERALD_DATABASE_URL))"),
        "{stdout}"
    );
    assert!(!dir.path().join("herald.db").exists());

    // Importing the users with their PSIDs on the page: 3,000 people the page can message,
    // 600,000 calls a day, 597,000 left after the campaign (99.5 %).
    herald_ok(
        dir.path(),
        &env,
        &["users", "import", "users.csv", "--page", PAGE],
    )
    .await;
    let stdout = herald_ok(dir.path(), &env, &args).await;
    assert_eq!(
        lines_with(&stdout, "daily budget:"),
        [format!(
            "daily budget: 600,000 calls per 24 h for page {PAGE} (200 × 3,000 engaged users, \
             the store's count of people the page can message)"
        )],
        "{stdout}"
    );
    assert_eq!(
        lines_with(&stdout, "left after it:"),
        ["left after it: 597,000 (99.5 % of the budget)"]
    );

    // 1,000 jobs Herald sent for the page an hour ago (one call each), and 10 for another page:
    // 600,000 - 1,000 - 3,000 = 596,000 left (99.3 %).
    let store = herald_store::Store::connect(&herald_core::Secret::new(database.clone()))
        .await
        .expect("store");
    let an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    for (page, count) in [(PAGE, 1_000), ("1000000002", 10)] {
        for n in 0..count {
            store
                .record_result(&sent(page, n, an_hour_ago), None)
                .await
                .expect("record");
        }
    }
    store.close().await;
    let stdout = herald_ok(dir.path(), &env, &args).await;
    assert_eq!(
        lines_with(&stdout, "used in the last 24 h:"),
        [
            "used in the last 24 h: 1,000 calls (Herald's own for this page, from its results; \
          other apps' calls are not seen)"
        ],
        "{stdout}"
    );
    assert_eq!(
        lines_with(&stdout, "left after it:"),
        ["left after it: 596,000 (99.3 % of the budget)"]
    );
}

/// A `sent` result of an earlier run for user `n` of `page`, sent at `at` in one call.
fn sent(page: &str, n: u64, at: time::OffsetDateTime) -> herald_core::DeliveryResult {
    herald_core::DeliveryResult {
        v: herald_core::RESULT_VERSION,
        job_id: format!("earlier:{page}:u{n}"),
        run_id: "earlier".to_owned(),
        campaign_id: "earlier".to_owned(),
        external_id: format!("u{n}"),
        page_id: page.to_owned(),
        status: herald_core::ResultStatus::Sent,
        message_id: Some(format!("m_{page}_{n}")),
        error: None,
        attempts: 1,
        finished_at: at,
    }
}

#[tokio::test]
async fn a_send_over_the_budget_is_refused_unless_over_budget_is_given() {
    let Some(_broker) = broker().await else {
        return;
    };
    let (dir, database) = setup();
    let prefix = unique_name("test-launch");
    let env = [
        ("HERALD_DATABASE_URL", database.as_str()),
        ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
    ];
    let send = |extra: &'static [&'static str]| {
        let mut command = tokio::process::Command::from(herald(&env));
        command
            .args(["campaign", "send", "campaign.toml", "--engaged-users", "10"])
            .args(extra)
            .current_dir(dir.path());
        async move { command.output().await.expect("run herald") }
    };
    let refused = send(&[]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("the campaign needs 3,000 calls, 1,000 more than page")
            && stderr.contains("0 used in the last 24 h")
            && stderr.contains("nothing was published")
            && stderr.contains("--over-budget"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&refused.stdout).contains("run_id"),
        "no run was started"
    );
    // Nothing reached the broker: the send queue is empty (declared here if it was not).
    let amqp = AmqpSettings {
        url: crate::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let topology = Topology::new(&prefix).expect("topology");
    let connection = herald_amqp::connect(&amqp).await.expect("connect");
    topology.declare(&connection).await.expect("declare");
    assert_eq!(
        connection
            .message_count(&topology.send_queue())
            .await
            .expect("count"),
        0
    );

    let sent = send(&["--over-budget"]).await;
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(stdout.contains("published: 3000"), "{stdout}");
    topology.delete(&connection).await.expect("cleanup");
    let _ = connection.close().await;
}
