//! Idempotent run starts. In the store (both backends): of concurrent claims of one key exactly
//! one wins, a bound key returns its run, another document is refused, and expired or abandoned
//! claims are forgotten. Over the admin API: the same `POST /campaigns/runs` sent three times
//! at once with one `Idempotency-Key` starts one run and publishes its jobs once. From the CLI:
//! `campaign send --idempotency-key` twice starts one run.

use std::time::Duration;

use herald_store::RunStart;
use time::OffsetDateTime;

use super::server_api_rig::{ApiServer, CAMPAIGN, TOKEN};
use super::store::{Rig, both_backends};
use crate::{eventually, herald};

both_backends!(a_key_starts_one_run);

async fn a_key_starts_one_run(rig: Rig) {
    let store = &rig.store;
    let now = OffsetDateTime::now_utc();
    let keep = (
        now - time::Duration::days(7),
        now - time::Duration::minutes(2),
    );
    let claims = (0..8).map(|_| store.claim_run_start("c1", "k1", "doc-a", now, keep));
    let found: Vec<RunStart> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .map(|claim| claim.expect("claim"))
        .collect();
    let winners = found.iter().filter(|f| **f == RunStart::Claimed).count();
    assert_eq!(winners, 1, "{found:?}");
    assert!(
        found
            .iter()
            .all(|f| matches!(f, RunStart::Claimed | RunStart::Pending))
    );

    store
        .bind_run_start("c1", "k1", "run-1")
        .await
        .expect("bind");
    let again = store.claim_run_start("c1", "k1", "doc-a", now, keep).await;
    assert_eq!(
        again.expect("claim"),
        RunStart::Existing {
            run_id: "run-1".into()
        }
    );
    let other = store.claim_run_start("c1", "k1", "doc-b", now, keep).await;
    assert_eq!(other.expect("claim"), RunStart::Different);
    let other_campaign = store.claim_run_start("c2", "k1", "doc-b", now, keep).await;
    assert_eq!(
        other_campaign.expect("claim"),
        RunStart::Claimed,
        "keys are per campaign"
    );

    // Releasing an unbound claim frees the key; a bound one stays.
    store.release_run_start("c2", "k1").await.expect("release");
    store.release_run_start("c1", "k1").await.expect("release");
    let freed = store.claim_run_start("c2", "k1", "doc-c", now, keep).await;
    assert_eq!(freed.expect("claim"), RunStart::Claimed);
    let kept = store.claim_run_start("c1", "k1", "doc-a", now, keep).await;
    assert!(matches!(kept.expect("claim"), RunStart::Existing { .. }));

    // Eight days later the key is forgotten; an unbound claim is forgotten after two minutes.
    let later = now + time::Duration::days(8);
    let forget = (
        later - time::Duration::days(7),
        later - time::Duration::minutes(2),
    );
    let expired = store
        .claim_run_start("c1", "k1", "doc-b", later, forget)
        .await;
    assert_eq!(expired.expect("claim"), RunStart::Claimed);
    let soon = now + time::Duration::minutes(3);
    let forget = (
        soon - time::Duration::days(7),
        soon - time::Duration::minutes(2),
    );
    let abandoned = store
        .claim_run_start("c2", "k1", "doc-d", soon, forget)
        .await;
    assert_eq!(
        abandoned.expect("claim"),
        RunStart::Claimed,
        "c2/k1 was never bound"
    );
}

#[tokio::test]
async fn the_same_start_sent_three_times_with_one_key_is_one_run() {
    let Some(server) = ApiServer::start("test-api-idempotent").await else {
        return;
    };
    let segment = server.dir.path().join("users.csv");
    std::fs::write(
        &segment,
        "external_id,messenger_id,first_name\nu1,101,Ana\nu2,102,Bo\nu3,103,Cy\n",
    )
    .expect("segment");
    let url = format!(
        "{}/campaigns/runs?segment={}",
        server.url,
        segment.display()
    );
    let client = reqwest::Client::new();
    let start = |key: Option<&str>, document: String| {
        let mut request = client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/toml")
            .body(document);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        async move {
            let response = request.send().await.expect("POST");
            let status = response.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
            (status, body)
        }
    };
    let tries = (0..3).map(|_| start(Some("nightly-2026-12-06"), CAMPAIGN.to_owned()));
    let answers = futures_util::future::join_all(tries).await;
    let mut statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 202], "{answers:?}");
    let run_id = answers[0].1["run_id"].as_str().expect("run_id").to_owned();
    assert!(
        answers
            .iter()
            .all(|(_, body)| body["run_id"] == run_id.as_str()),
        "{answers:?}"
    );

    // A different document under the same key is refused; no key, a new run.
    let changed = CAMPAIGN.replace("Hi {{", "Hello {{");
    let (status, body) = start(Some("nightly-2026-12-06"), changed).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = start(Some("bad key"), CAMPAIGN.to_owned()).await;
    assert_eq!(status, 422, "a key with a space: {body}");

    let location = format!("/campaigns/runs/{run_id}");
    let published = eventually(Duration::from_secs(30), || async {
        server.get(&location).await.json["producer"]["complete"] == true
    })
    .await;
    assert!(published, "{}", server.get(&location).await.text);
    let jobs = crate::drain(&server.connection, &server.topology.send_queue()).await;
    assert_eq!(jobs.len(), 3, "one run's jobs, published once");
    server.stop().await;
}

#[tokio::test]
async fn campaign_send_twice_with_one_key_starts_one_run() {
    let Some(server) = ApiServer::start("test-cli-idempotent").await else {
        return;
    };
    let dir = server.dir.path();
    std::fs::write(dir.join("campaign.toml"), CAMPAIGN).expect("campaign");
    std::fs::write(
        dir.join("users.csv"),
        "external_id,messenger_id,first_name\nu1,101,Ana\nu2,102,Bo\n",
    )
    .expect("segment");
    let send = |key: &str| {
        let mut command = herald(&[
            ("HERALD_DATABASE_URL", server.database_url.as_str()),
            ("HERALD_TOPOLOGY_PREFIX", server.topology.prefix()),
        ]);
        command
            .args([
                "campaign",
                "send",
                "campaign.toml",
                "--segment",
                "users.csv",
            ])
            .args(["--idempotency-key", key])
            .current_dir(dir);
        tokio::process::Command::from(command).output()
    };
    let first = send("k-1").await.expect("first send");
    let second = send("k-1").await.expect("second send");
    let run_id = |output: &std::process::Output| {
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("run_id: ").map(str::to_owned))
            .expect("run_id")
    };
    assert_eq!(run_id(&first), run_id(&second));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("nothing was published"), "{said}");
    let jobs = crate::drain(&server.connection, &server.topology.send_queue()).await;
    assert_eq!(jobs.len(), 2, "the second send published nothing");

    std::fs::write(
        dir.join("campaign.toml"),
        CAMPAIGN.replace("Hi {{", "Yo {{"),
    )
    .expect("campaign");
    let changed = send("k-1").await.expect("third send");
    assert_eq!(changed.status.code(), Some(65), "{changed:?}");
    server.stop().await;
}
