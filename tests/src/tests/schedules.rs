//! Scheduled campaigns with two `herald serve` processes on one store (SQLite, then
//! PostgreSQL), RabbitMQ and the real producer: a campaign scheduled 5 s ahead (`send_at`)
//! shows `scheduled`, then starts exactly once although both serves see it due; a `cron`
//! campaign ticking every 5 s (six fields, seconds first) starts one run per tick, every tick's
//! jobs published once, and stops when cancelled.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use herald_amqp::Topology;
use herald_core::{Secret, SendJob};
use herald_store::Store;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::bench::free_addr;
use crate::{Running, broker, drain, eventually, herald, herald_ok, unique_name};

const PAGE: &str = "1000000001";
const USERS: usize = 3;

fn campaign(id: &str, schedule: &str) -> String {
    format!(
        "id = \"{id}\"\npage_id = \"{PAGE}\"\nmessaging_type = \"UPDATE\"\n[message]\n\
         text = \"Hi\"\n[segment]\nfile = \"users.csv\"\n[delivery]\nwindow = \"off\"\n\
         [schedule]\n{schedule}\n"
    )
}

fn schedule_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("schedule_id: "))
        .unwrap_or_else(|| panic!("no schedule id in {stdout}"))
        .to_owned()
}

async fn runs_of(database: &Secret, schedule_id: &str) -> Vec<(i64, Option<String>)> {
    let store = Store::connect(database).await.expect("store");
    let record = store.schedule(schedule_id).await.expect("read");
    store.close().await;
    record.map(|r| r.runs).unwrap_or_default()
}

#[tokio::test]
async fn a_schedule_starts_once_per_occurrence_with_two_serves() {
    let Some(connection) = broker().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = Secret::new(format!(
        "sqlite://{}",
        dir.path().join("herald.db").display()
    ));
    scenario(&connection, sqlite).await;
    crate::postgres::in_new_schema(|url| {
        let connection = &connection;
        async move { scenario(connection, url).await }
    })
    .await;
}

async fn scenario(connection: &herald_amqp::Connection, database: Secret) {
    crate::herald_bin();
    let dir = tempfile::tempdir().expect("dir");
    let mut users = String::from("external_id,messenger_id\n");
    for n in 0..USERS {
        users.push_str(&format!("u{n},{}\n", 70_000 + n));
    }
    std::fs::write(dir.path().join("users.csv"), users).expect("segment");
    let prefix = unique_name("test-schedules");
    let segment_dir = dir.path().display().to_string();
    let env = [
        ("HERALD_DATABASE_URL", database.expose()),
        ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
        ("HERALD_SEGMENT_DIR", segment_dir.as_str()),
        ("HERALD_APP_SECRET", "schedules-app-secret"),
        ("HERALD_VERIFY_TOKEN", "schedules-verify-token"),
    ];
    Store::connect(&database)
        .await
        .expect("store")
        .close()
        .await;
    let topology = Topology::new(&prefix).expect("prefix");
    topology.declare(connection).await.expect("declare");

    // Once, 5 s from now: stored, not published, `scheduled`.
    let at = (OffsetDateTime::now_utc() + time::Duration::seconds(5))
        .format(&Rfc3339)
        .expect("format");
    let once = campaign("once", &format!("send_at = \"{at}\""));
    std::fs::write(dir.path().join("once.toml"), once).expect("campaign");
    let stdout = herald_ok(dir.path(), &env, &["campaign", "send", "once.toml"]).await;
    let once_id = schedule_id(&stdout);
    let status = herald_ok(dir.path(), &env, &["campaign", "status", &once_id]).await;
    assert!(status.contains("state: scheduled"), "{status}");
    let queued = connection
        .message_count(&topology.send_queue())
        .await
        .expect("count");
    assert_eq!(queued, 0, "a scheduled campaign published at once");

    let serves: Vec<Running> = (0..2)
        .map(|n| {
            let mut command = herald(&env);
            let log = std::fs::File::create(dir.path().join(format!("serve{n}.log"))).expect("log");
            command
                .args(["serve", "--addr", &free_addr()])
                .stdout(Stdio::null())
                .stderr(log);
            Running(command.spawn().expect("start serve"))
        })
        .collect();
    let started = eventually(Duration::from_secs(30), || async {
        runs_of(&database, &once_id).await.len() == 1
    })
    .await;
    assert!(started, "the scheduled run never started");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = runs_of(&database, &once_id).await;
    assert_eq!(runs.len(), 1, "started more than once: {runs:?}");
    assert!(runs[0].1.is_some(), "{runs:?}");
    let status = herald_ok(dir.path(), &env, &["campaign", "status", &once_id]).await;
    assert!(status.contains("state: done"), "{status}");

    // Every 5 s until cancelled.
    let tick = campaign("tick", "cron = \"*/5 * * * * *\"");
    std::fs::write(dir.path().join("tick.toml"), tick).expect("campaign");
    let stdout = herald_ok(dir.path(), &env, &["campaign", "send", "tick.toml"]).await;
    let tick_id = schedule_id(&stdout);
    let ticked = eventually(Duration::from_secs(40), || async {
        runs_of(&database, &tick_id).await.len() >= 3
    })
    .await;
    assert!(ticked, "fewer than 3 ticks in 40 s");
    let cancelled = herald_ok(dir.path(), &env, &["campaign", "cancel", &tick_id]).await;
    assert!(cancelled.contains("state: cancelled"), "{cancelled}");
    let ticks = runs_of(&database, &tick_id).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        runs_of(&database, &tick_id).await,
        ticks,
        "a tick after cancel"
    );
    for pair in ticks.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, 5_000, "ticks 5 s apart: {ticks:?}");
    }
    let listed = herald_ok(dir.path(), &env, &["campaign", "schedules"]).await;
    assert!(
        listed.contains(&once_id) && listed.contains(&tick_id),
        "{listed}"
    );

    for serve in serves {
        assert!(serve.terminate().await, "serve did not stop cleanly");
    }
    // Every occurrence's jobs, once: 3 users × (1 + ticks) runs, one job per user per run.
    let jobs = drain(connection, &topology.send_queue()).await;
    let mut per_run: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for body in &jobs {
        let job: SendJob = serde_json::from_slice(body).expect("job");
        let fresh = per_run
            .entry(job.run_id.clone())
            .or_default()
            .insert(job.external_id.clone());
        assert!(
            fresh,
            "{} published twice in {}",
            job.external_id, job.run_id
        );
    }
    let expected_runs: BTreeSet<String> = runs
        .iter()
        .chain(ticks.iter())
        .filter_map(|(_, run)| run.clone())
        .collect();
    assert_eq!(
        per_run.keys().cloned().collect::<BTreeSet<_>>(),
        expected_runs,
        "one run per occurrence, no other"
    );
    assert!(per_run.values().all(|users| users.len() == USERS));
    topology.delete(connection).await.expect("delete");
}
