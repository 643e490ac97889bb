//! Outside data is bounded where it enters, through the real binary: a segment row longer
//! than the line cap stops `campaign send` (its run then says why) and `users import` at that
//! line (the rows before it kept), and an input with no line break at all (`/dev/zero`) is refused at once instead of
//! growing the process's memory.

use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{AmqpSettings, Topology};
use herald_producer::MAX_LINE_BYTES;

use crate::{broker, drain, herald, herald_ok, unique_name};

const PAGE: &str = "1000000001";

/// A CSV whose third line is one byte over the cap.
fn long_third_line() -> String {
    format!(
        "external_id,messenger_id,country,promo_code\nu1,101,BR,P1\nu2,102,BR,{}\nu3,103,BR,P3\n",
        "x".repeat(MAX_LINE_BYTES - "u2,102,BR,".len() + 1)
    )
}

async fn output(command: std::process::Command) -> std::process::Output {
    let run = tokio::process::Command::from(command).output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("herald ended within a minute")
        .expect("run herald")
}

#[tokio::test]
async fn a_row_over_the_line_cap_stops_campaign_send_at_its_line() {
    let Some(connection) = broker().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let campaign = herald_core::campaign::EXAMPLE_TOML;
    std::fs::write(dir.path().join("campaign.toml"), campaign).expect("campaign");
    std::fs::write(dir.path().join("users.csv"), long_third_line()).expect("segment");
    let prefix = unique_name("test-line-cap");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let settings = [
        ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
        ("HERALD_DATABASE_URL", database.as_str()),
    ];
    let mut command = herald(&settings);
    command
        .args([
            "campaign",
            "send",
            "campaign.toml",
            "--segment",
            "users.csv",
        ])
        .current_dir(dir.path());
    let done = output(command).await;
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains(&format!("line 3 is longer than {MAX_LINE_BYTES} bytes")),
        "{stderr}"
    );
    let topology = Topology::new(&prefix).expect("topology");
    let jobs = drain(&connection, &topology.send_queue()).await;
    assert_eq!(jobs.len(), 1, "the row before the long one was published");
    // The run says why its producer stopped, with the way on.
    let stdout = String::from_utf8_lossy(&done.stdout);
    let run_id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("run_id: "))
        .unwrap_or_else(|| panic!("no run id in {stdout}"));
    let status = herald_ok(dir.path(), &settings, &["campaign", "status", run_id]).await;
    assert!(status.contains("(producer stopped)"), "{status}");
    assert!(status.contains("line 3 is longer than"), "{status}");
    assert!(status.contains(&format!("--resume {run_id}")), "{status}");
    let amqp = AmqpSettings {
        url: crate::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let cleanup = herald_amqp::connect(&amqp).await.expect("connect");
    topology.delete(&cleanup).await.expect("delete topology");
}

#[tokio::test]
async fn users_import_stops_at_a_row_over_the_line_cap_and_refuses_dev_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    std::fs::write(dir.path().join("users.csv"), long_third_line()).expect("users");
    let settings = [("HERALD_DATABASE_URL", database.as_str())];

    let mut command = herald(&settings);
    command
        .args(["users", "import", "users.csv", "--page", PAGE])
        .current_dir(dir.path());
    let done = output(command).await;
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("line 3 is longer than"), "{stderr}");
    assert!(
        stderr.contains("the rows before it were imported"),
        "{stderr}"
    );
    let store = herald_store::Store::connect(&database.as_str().into())
        .await
        .expect("store");
    let users: Vec<String> = store
        .users_for_page(PAGE)
        .map(|user| user.expect("user").external_id)
        .collect()
        .await;
    assert_eq!(users, ["u1"], "the row before the long one was imported");
    store.close().await;

    // No line break ever: refused at the first line, well within the minute.
    let mut command = herald(&settings);
    command
        .args(["users", "import", "/dev/zero"])
        .current_dir(dir.path());
    let done = output(command).await;
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("line 1 is longer than"), "{stderr}");
}
