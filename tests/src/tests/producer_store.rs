//! The producer on `segment.source = "store"`, against the real broker and a real SQLite store:
//! the audience of the campaign's page with the same filters and skips as files (window from
//! `last_inbound_at`, opt-outs from the webhook, blank PSIDs), the run record kept in the store,
//! and a resume that continues after the saved audience cursor even when users were added
//! before it meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;

use herald_amqp::{AmqpSettings, Topology};
use herald_core::Secret;
use herald_core::campaign::Campaign;
use herald_producer::{Progress, Run, SegmentInput, SendSpec};
use herald_store::{RunProgress, Store, UserRecord};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::{broker, drain, unique_name};

const PAGE: &str = "1000000001";

fn campaign() -> Campaign {
    let toml: String = herald_core::campaign::EXAMPLE_TOML
        .lines()
        .map(|line| {
            if line.starts_with("file = ") {
                "source = \"store\"\n".to_owned()
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    Campaign::from_toml(&toml).expect("the example with source = store is valid")
}

fn user(id: &str, psid: &str, country: &str, inbound: Option<OffsetDateTime>) -> UserRecord {
    UserRecord {
        external_id: id.to_owned(),
        messenger_id: Some(psid.to_owned()),
        last_inbound_at: inbound,
        attributes: BTreeMap::from([
            ("country".to_owned(), country.to_owned()),
            ("first_name".to_owned(), format!("N-{id}")),
        ]),
        page_id: Some(PAGE.to_owned()),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    topology: Topology,
    settings: AmqpSettings,
}

impl Fixture {
    async fn new(connection: &herald_amqp::Connection) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let store = Store::connect(&Secret::new(url)).await.expect("store");
        let topology = Topology::new(&unique_name("test-pstore")).expect("topology");
        let settings = AmqpSettings {
            url: crate::amqp_addr().into(),
            ..AmqpSettings::default()
        };
        let amqp = herald_amqp::connect(&settings).await.expect("connect");
        topology.declare(&amqp).await.expect("declare");
        let _ = amqp.close().await;
        let _ = connection;
        Self {
            _dir: dir,
            store,
            topology,
            settings,
        }
    }

    fn spec(&self, resume: Option<String>) -> SendSpec {
        SendSpec {
            campaign: Arc::new(campaign()),
            segment: SegmentInput::Store,
            resume,
            strict: false,
            amqp: self.settings.clone(),
            topology: self.topology.clone(),
            store: self.store.clone(),
            shared_link: None,
        }
    }

    async fn send(&self, resume: Option<String>) -> (String, RunProgress) {
        let run = Run::prepare(self.spec(resume)).await.expect("prepare");
        let run_id = run.run_id().to_owned();
        let progress = run
            .execute(Arc::new(Progress::default()))
            .await
            .expect("run");
        (run_id, progress)
    }

    async fn cleanup(&self) {
        let amqp = herald_amqp::connect(&self.settings).await.expect("connect");
        self.topology.delete(&amqp).await.expect("delete");
        let _ = amqp.close().await;
    }
}

fn bodies(raw: &[Vec<u8>]) -> Vec<Value> {
    raw.iter()
        .map(|b| serde_json::from_slice(b).expect("JSON"))
        .collect()
}

/// The external ids of jobs, sorted.
fn job_users(jobs: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = jobs
        .iter()
        .map(|j| j["external_id"].as_str().expect("external_id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_store_segment_applies_filters_window_and_opt_outs() {
    let Some(connection) = broker().await else {
        return;
    };
    let fixture = Fixture::new(&connection).await;
    let now = OffsetDateTime::now_utc();
    let recent = Some(now - Duration::hours(1));
    let old = Some(now - Duration::days(3));
    let mut blank = user("s-blank", "  ", "BR", recent);
    blank.messenger_id = Some("  ".to_owned());
    fixture
        .store
        .upsert_users(&[
            user("s-recent", "2001", "BR", recent),
            user("s-old", "2002", "BR", old),
            user("s-pt", "2003", "PT", recent),
            user("s-opted", "2004", "BR", recent),
            blank,
        ])
        .await
        .expect("import");
    // The webhook saw s-opted stop marketing messages, and a stranger write (anonymous).
    fixture
        .store
        .set_opt_out(PAGE, "2004", true, now - Duration::minutes(5))
        .await
        .expect("opt out");
    fixture
        .store
        .record_inbound(PAGE, "2999", now - Duration::minutes(1), None)
        .await
        .expect("inbound");

    let (run_id, progress) = fixture.send(None).await;

    let jobs = bodies(&drain(&connection, &fixture.topology.send_queue()).await);
    assert_eq!(job_users(&jobs), ["s-recent"], "{jobs:?}");
    assert_eq!(jobs[0]["request"]["recipient"]["id"], "2001");
    assert_eq!(progress.published, 1);
    let skipped: BTreeMap<&str, u64> = progress
        .skipped
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        skipped,
        BTreeMap::from([("blank_psid", 1), ("opted_out", 1), ("outside_window", 1)]),
        "the stranger has no country, so the filter leaves them out"
    );
    let record = fixture
        .store
        .load_run(&run_id)
        .await
        .expect("load")
        .expect("the run is in the store");
    assert_eq!(record.segment, "store");
    assert!(record.progress.complete);
    assert_eq!(record.progress, progress);
    assert!(record.progress.cursor.is_some(), "{record:?}");
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_resumed_store_run_continues_after_its_cursor() {
    let Some(connection) = broker().await else {
        return;
    };
    let fixture = Fixture::new(&connection).await;
    let recent = Some(OffsetDateTime::now_utc() - Duration::hours(1));
    let users: Vec<UserRecord> = (0..40)
        .map(|i| user(&format!("u{i:03}"), &format!("{}", 3000 + i), "BR", recent))
        .collect();
    fixture.store.upsert_users(&users).await.expect("import");

    // A run that crashed after confirming u000..=u019: its record says so.
    let run = Run::prepare(fixture.spec(None)).await.expect("prepare");
    let run_id = run.run_id().to_owned();
    drop(run);
    let crashed = RunProgress {
        confirmed_through_line: 20,
        published: 20,
        cursor: Some("user:u019".to_owned()),
        ..RunProgress::default()
    };
    fixture
        .store
        .save_run_progress(&run_id, &crashed)
        .await
        .expect("save");
    // Meanwhile a user sorted before the cursor arrived: a count would shift, a key does not.
    fixture
        .store
        .upsert_users(&[user("u0005", "3999", "BR", recent)])
        .await
        .expect("late user");

    let (resumed, progress) = fixture.send(Some(run_id.clone())).await;
    assert_eq!(resumed, run_id);
    let jobs = bodies(&drain(&connection, &fixture.topology.send_queue()).await);
    let expected: Vec<String> = (20..40).map(|i| format!("u{i:03}")).collect();
    assert_eq!(job_users(&jobs), expected);
    for job in &jobs {
        let id = job["external_id"].as_str().expect("id");
        assert_eq!(
            job["job_id"],
            format!("{run_id}:{id}"),
            "same run, same job ids"
        );
    }
    assert_eq!(progress.published, 40);
    assert_eq!(progress.confirmed_through_line, 40);
    assert_eq!(progress.cursor.as_deref(), Some("user:u039"));

    // Resuming a finished run publishes nothing.
    let (_, again) = fixture.send(Some(run_id)).await;
    assert_eq!(again, progress);
    assert!(
        drain(&connection, &fixture.topology.send_queue())
            .await
            .is_empty()
    );
    fixture.cleanup().await;
}
