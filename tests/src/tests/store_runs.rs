//! The store on both databases (see `store.rs` for the rig): webhook dedupe keys, migrations
//! applied once however often a store connects, campaign runs and their state changes, and
//! connection errors that never show the URL.

use std::collections::BTreeMap;

use herald_store::{NewRun, RunProgress, RunState, Store, StoreError};
use time::OffsetDateTime;
use time::macros::datetime;

use super::store::{PAGE, Rig, both_backends, record, users};

both_backends!(
    seen_event_dedupes,
    migrations_run_once,
    run_lifecycle,
    a_stopped_run_is_taken_over_once
);

async fn seen_event_dedupes(rig: Rig) {
    let store = &rig.store;
    assert!(store.seen_event("mid.1").await.expect("first"));
    assert!(!store.seen_event("mid.1").await.expect("second"));
    assert!(store.seen_event("42:1458692752478").await.expect("other"));
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(1);
    assert_eq!(store.prune_seen_events(later).await.expect("prune"), 2);
    assert!(store.seen_event("mid.1").await.expect("after pruning"));
}

async fn migrations_run_once(rig: Rig) {
    rig.store
        .upsert_users(&[record("u1", &[("a", "1")])])
        .await
        .expect("write");
    // A second and a third store on the same database: migrations are a no-op, data is there.
    for _ in 0..2 {
        let again = Store::connect(&rig.url).await.expect("reconnect");
        assert_eq!(users(&again, PAGE).await.len(), 1);
        again.close().await;
    }
    let url = rig.url.expose();
    let applied: i64 = if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .expect("count")
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("postgres");
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .expect("count")
    };
    let versions = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/herald-store/migrations/sqlite"
    ))
    .expect("migrations")
    .count();
    assert_eq!(
        applied, versions as i64,
        "every migration version applied once"
    );
}

async fn run_lifecycle(rig: Rig) {
    let store = &rig.store;
    let run = NewRun {
        run_id: "r1".into(),
        campaign_id: "welcome-back".into(),
        document: r#"{"id":"welcome-back","page_id":"1000000001"}"#.into(),
        segment: "store".into(),
        started_at: datetime!(2026-11-21 09:00 UTC),
    };
    store.create_run(&run).await.expect("create");
    let again = store.create_run(&run).await;
    assert!(
        matches!(again, Err(StoreError::RunExists { .. })),
        "{again:?}"
    );
    assert!(store.load_run("nope").await.expect("load").is_none());

    let progress = RunProgress {
        confirmed_through_line: 41,
        published: 30,
        skipped: BTreeMap::from([("blank_psid".to_owned(), 2), ("opted_out".to_owned(), 1)]),
        malformed: 1,
        complete: true,
        cursor: Some("user:u-041".to_owned()),
    };
    store
        .save_run_progress("r1", &progress)
        .await
        .expect("save");
    let unknown = store.save_run_progress("nope", &progress).await;
    assert!(
        matches!(unknown, Err(StoreError::UnknownRun { .. })),
        "{unknown:?}"
    );
    let loaded = store.load_run("r1").await.expect("load").expect("exists");
    assert_eq!(
        (&loaded.document, &loaded.segment, loaded.started_at),
        (&run.document, &run.segment, run.started_at)
    );
    assert_eq!(
        (loaded.state, &loaded.progress),
        (RunState::Running, &progress)
    );

    // running <-> paused, repeats are no-ops, cancelled is final.
    for state in [
        RunState::Paused,
        RunState::Paused,
        RunState::Running,
        RunState::Cancelled,
    ] {
        store.set_run_status("r1", state).await.expect("transition");
        let loaded = store.load_run("r1").await.expect("load").expect("exists");
        assert_eq!(loaded.state, state);
    }
    store
        .set_run_status("r1", RunState::Cancelled)
        .await
        .expect("repeat");
    match store.set_run_status("r1", RunState::Running).await {
        Err(StoreError::Transition { from, to, .. }) => {
            assert_eq!((from, to), (RunState::Cancelled, RunState::Running));
        }
        other => panic!("expected a refused transition, got {other:?}"),
    }
    let unknown = store.set_run_status("nope", RunState::Paused).await;
    assert!(
        matches!(unknown, Err(StoreError::UnknownRun { .. })),
        "{unknown:?}"
    );
}

/// A run whose producer stopped, or went silent, is taken over by one caller; a busy or
/// complete run by none.
async fn a_stopped_run_is_taken_over_once(rig: Rig) {
    let store = &rig.store;
    let run = NewRun {
        run_id: "d1".into(),
        campaign_id: "receipt".into(),
        document: r#"{"id":"receipt","page_id":"1000000001"}"#.into(),
        segment: "3 recipients".into(),
        started_at: OffsetDateTime::now_utc(),
    };
    store.create_run(&run).await.expect("create");
    let silent_since = |ms: i64| herald_core::clock::now_ms() + ms;
    // Busy: updated just now, no stop recorded.
    assert!(
        !store
            .take_stopped_run("d1", silent_since(-60_000))
            .await
            .expect("busy")
    );
    store
        .record_producer_stop("d1", "broker nacked a job")
        .await
        .expect("stop");
    assert!(
        store
            .take_stopped_run("d1", silent_since(-60_000))
            .await
            .expect("take")
    );
    let loaded = store.load_run("d1").await.expect("load").expect("exists");
    assert_eq!(loaded.producer_stopped, None, "taking clears the stop");
    assert!(
        !store
            .take_stopped_run("d1", silent_since(-60_000))
            .await
            .expect("again"),
        "a second caller does not get it"
    );
    // Silent since before the threshold: taken without a recorded stop.
    assert!(
        store
            .take_stopped_run("d1", silent_since(60_000))
            .await
            .expect("silent")
    );
    let done = RunProgress {
        complete: true,
        ..RunProgress::default()
    };
    store.save_run_progress("d1", &done).await.expect("save");
    store
        .record_producer_stop("d1", "late")
        .await
        .expect("stop");
    assert!(
        !store
            .take_stopped_run("d1", silent_since(60_000))
            .await
            .expect("complete"),
        "a complete run is never taken"
    );
    assert!(
        !store
            .take_stopped_run("nope", silent_since(60_000))
            .await
            .expect("unknown")
    );
}

#[tokio::test]
async fn connect_errors_never_show_the_url() {
    let check = |url: &str, error: StoreError| {
        let shown = format!(
            "{error} | {error:?} | {:?}",
            std::error::Error::source(&error)
        );
        assert!(!shown.contains("s3cr3t"), "{url}: {shown}");
    };
    for url in [
        "mysql://herald:s3cr3t@127.0.0.1/db",
        "s3cr3t",
        "://s3cr3t@x",
    ] {
        let error = Store::connect(&url.into()).await.expect_err(url);
        assert!(
            matches!(error, StoreError::UnsupportedUrl { .. }),
            "{error:?}"
        );
        check(url, error);
    }
    // A refused login (a closed port would be as fast to check, but the pool retries
    // unreachable servers until its acquire timeout, 10 s).
    let url = "postgres://herald:s3cr3t@127.0.0.1:5432/herald_test";
    let error = Store::connect(&url.into()).await.expect_err(url);
    assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
    check(url, error);
}
