//! Frequency caps with the real producer (`herald campaign send`), RabbitMQ and both stores.
//! A cap of 1 per 24 h skips the users who got another campaign's message from the page today
//! (a `sent` result an hour old) and sends to the rest. Two capped campaigns started at the
//! same moment on one page plan one after the other (the second waits for the first's claim on
//! the page), so the second counts the first's reservations: each user gets exactly one job
//! between them, and the other campaign skips them with `frequency_cap`.

use std::collections::BTreeMap;

use herald_amqp::Topology;
use herald_core::{DeliveryResult, ResultStatus, Secret, SendJob};
use herald_store::Store;

use crate::{broker, drain, herald_ok, unique_name};

const PAGE: &str = "1000000001";

fn campaign(id: &str, segment: &str) -> String {
    format!(
        "id = \"{id}\"\npage_id = \"{PAGE}\"\nmessaging_type = \"UPDATE\"\n[message]\n\
         text = \"Hi\"\n[segment]\nfile = \"{segment}\"\n[delivery]\nwindow = \"off\"\n\
         frequency_cap = {{ max = 1, per = \"24h\" }}\n"
    )
}

/// A `sent` result of another campaign for `external_id`, an hour ago.
fn earlier(external_id: &str) -> DeliveryResult {
    DeliveryResult {
        v: herald_core::RESULT_VERSION,
        job_id: format!("earlier:{external_id}"),
        run_id: "earlier".to_owned(),
        campaign_id: "earlier".to_owned(),
        external_id: external_id.to_owned(),
        page_id: PAGE.to_owned(),
        status: ResultStatus::Sent,
        message_id: Some(format!("m_{external_id}")),
        error: None,
        attempts: 1,
        finished_at: time::OffsetDateTime::now_utc() - time::Duration::hours(1),
    }
}

fn line<'a>(stdout: &'a str, prefix: &str) -> Option<&'a str> {
    stdout.lines().find_map(|l| l.strip_prefix(prefix))
}

async fn both_stores<F, Fut>(case: F)
where
    F: Fn(Secret) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = format!("sqlite://{}", dir.path().join("herald.db").display());
    case(Secret::new(sqlite)).await;
    crate::postgres::in_new_schema(case).await;
}

#[tokio::test]
async fn a_cap_of_one_a_day_skips_users_who_got_another_campaign_today() {
    let Some(connection) = broker().await else {
        return;
    };
    both_stores(|database| {
        let connection = &connection;
        async move {
            let store = Store::connect(&database).await.expect("store");
            for user in ["u1", "u3"] {
                store
                    .record_result(&earlier(user), None)
                    .await
                    .expect("record");
            }
            // A day and a half ago: outside the period.
            let mut old = earlier("u2");
            old.finished_at -= time::Duration::hours(35);
            store.record_result(&old, None).await.expect("record");
            store.close().await;
            let dir = tempfile::tempdir().expect("dir");
            std::fs::write(
                dir.path().join("users.csv"),
                "external_id,messenger_id\nu1,101\nu2,102\nu3,103\nu4,104\n",
            )
            .expect("segment");
            std::fs::write(
                dir.path().join("capped.toml"),
                campaign("capped", "users.csv"),
            )
            .expect("campaign");
            let prefix = unique_name("test-cap");
            let env = [
                ("HERALD_DATABASE_URL", database.expose()),
                ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
            ];
            let stdout = herald_ok(dir.path(), &env, &["campaign", "send", "capped.toml"]).await;
            assert_eq!(line(&stdout, "published: "), Some("2"), "{stdout}");
            assert_eq!(
                line(&stdout, "skipped.frequency_cap: "),
                Some("2"),
                "{stdout}"
            );
            let topology = Topology::new(&prefix).expect("prefix");
            let jobs = drain(connection, &topology.send_queue()).await;
            let mut users: Vec<String> = jobs
                .iter()
                .map(|body| {
                    let job: SendJob = serde_json::from_slice(body).expect("job");
                    job.external_id
                })
                .collect();
            users.sort();
            assert_eq!(users, ["u2", "u4"]);
            topology.delete(connection).await.expect("delete");
        }
    })
    .await;
}

#[tokio::test]
async fn two_capped_campaigns_at_once_reach_each_user_once_between_them() {
    const USERS: usize = 300;
    let Some(connection) = broker().await else {
        return;
    };
    both_stores(|database| {
        let connection = &connection;
        async move {
            let dir = tempfile::tempdir().expect("dir");
            let mut csv = String::from("external_id,messenger_id\n");
            for n in 0..USERS {
                csv.push_str(&format!("u{n},{}\n", 50_000 + n));
            }
            std::fs::write(dir.path().join("users.csv"), csv).expect("segment");
            for id in ["first", "second"] {
                std::fs::write(
                    dir.path().join(format!("{id}.toml")),
                    campaign(id, "users.csv"),
                )
                .expect("campaign");
            }
            let prefix = unique_name("test-cap-race");
            let env = [
                ("HERALD_DATABASE_URL", database.expose()),
                ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
            ];
            // The store exists before both start, so neither creates it under the other.
            Store::connect(&database)
                .await
                .expect("store")
                .close()
                .await;
            let (a, b) = tokio::join!(
                herald_ok(dir.path(), &env, &["campaign", "send", "first.toml"]),
                herald_ok(dir.path(), &env, &["campaign", "send", "second.toml"]),
            );
            let published: u64 = [&a, &b]
                .iter()
                .map(|out| {
                    line(out, "published: ")
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                })
                .sum();
            let capped: u64 = [&a, &b]
                .iter()
                .map(|out| {
                    line(out, "skipped.frequency_cap: ")
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                })
                .sum();
            assert_eq!(
                (published, capped),
                (USERS as u64, USERS as u64),
                "first:\n{a}\nsecond:\n{b}"
            );
            let topology = Topology::new(&prefix).expect("prefix");
            let jobs = drain(connection, &topology.send_queue()).await;
            let mut per_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for body in &jobs {
                let job: SendJob = serde_json::from_slice(body).expect("job");
                per_user
                    .entry(job.external_id)
                    .or_default()
                    .push(job.campaign_id);
            }
            assert_eq!(per_user.len(), USERS, "every user got a job");
            let twice: Vec<_> = per_user.iter().filter(|(_, c)| c.len() > 1).collect();
            assert!(twice.is_empty(), "users reached twice: {twice:?}");
            topology.delete(connection).await.expect("delete");
        }
    })
    .await;
}
