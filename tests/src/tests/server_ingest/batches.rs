//! The consumers' batches on both databases: a batch that fails in the middle (first the whole
//! store, then one row the database refuses) loses nothing and stores nothing twice, and one
//! person's events keep their order while many people's are written concurrently.

use herald_amqp::Publisher;
use herald_store::{Backend, OPTED_OUT_ATTRIBUTE};
use serde_json::json;

use super::{Pipeline, WAIT, entry, marketing, message, sent, t0, t1};
use crate::eventually;
use crate::tests::store::{Rig, both_backends};

both_backends!(
    a_batch_that_fails_midway_loses_nothing_and_stores_nothing_twice,
    one_persons_events_stay_in_order_under_concurrent_ingest,
);

/// Results published, one of which the database refuses.
const RESULTS: usize = 600;
const REFUSED: &str = "rb:u250";

/// Runs `sql` (one statement each) on the rig's database through a connection of the test's.
async fn admin(rig: &Rig, statements: &[&str]) {
    let url = rig.url.expose();
    if rig.store.backend() == Backend::Sqlite {
        let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
        for sql in statements {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("postgres");
        for sql in statements {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        pool.close().await;
    }
}

async fn a_batch_that_fails_midway_loses_nothing_and_stores_nothing_twice(rig: Rig) {
    let Some(pipeline) = Pipeline::new("test-batch-midway", rig.store.clone()).await else {
        return;
    };
    // One row the database refuses for good, as it would a NUL byte or an oversized key.
    let refuse = if rig.store.backend() == Backend::Sqlite {
        vec![format!(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON deliveries WHEN NEW.job_id = '{REFUSED}' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )]
    } else {
        vec![
            format!(
                "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.job_id = '{REFUSED}' THEN \
                   RAISE EXCEPTION 'refused by the test' USING ERRCODE = '22023'; \
                 END IF; RETURN NEW; END $$"
            ),
            "CREATE TRIGGER refuse_one BEFORE INSERT ON deliveries \
             FOR EACH ROW EXECUTE FUNCTION refuse_one()"
                .to_owned(),
        ]
    };
    let refuse: Vec<&str> = refuse.iter().map(String::as_str).collect();
    admin(&rig, &refuse).await;
    // The store goes away first (a transient failure), so results pile up behind the batch
    // being retried and the next batch holds hundreds of them.
    admin(&rig, &["ALTER TABLE deliveries RENAME TO deliveries_away"]).await;

    let publisher = Publisher::open(&pipeline.web.connection, 256)
        .await
        .expect("publisher");
    let exchange = pipeline.web.topology.results_exchange();
    let mut bodies: Vec<_> = (0..RESULTS)
        .map(|i| sent("rb", &format!("u{i}"), &format!("m_rb_{i}"), t0()))
        .collect();
    // A redelivered result, as after a worker lost its connection: stored once.
    bodies.push(bodies[10].clone());
    let bodies = bodies
        .iter()
        .map(|result| serde_json::to_vec(result).expect("json"));
    crate::publish_all(&publisher, &exchange, "sent.test", bodies).await;
    let _ = publisher.close().await;
    let errors = || {
        pipeline
            .metrics
            .consumer_store_errors
            .with_label_values(&["results"])
            .get()
    };
    assert!(eventually(WAIT, || async { errors() >= 2 }).await);
    admin(&rig, &["ALTER TABLE deliveries_away RENAME TO deliveries"]).await;

    let store = &pipeline.store;
    let total = || async { store.run_status("rb").await.map_or(0, |s| s.total) };
    assert!(
        eventually(WAIT, || async { total().await == RESULTS as u64 - 1 }).await,
        "stored {} of {}",
        total().await,
        RESULTS - 1
    );
    let settled = || {
        let get = |outcome| {
            pipeline
                .metrics
                .consumer_messages
                .with_label_values(&["results", outcome])
                .get()
        };
        (get("processed"), get("poison"))
    };
    assert!(eventually(WAIT, || async { settled() == (RESULTS as u64, 1) }).await);
    let recorded = pipeline
        .metrics
        .results_recorded
        .with_label_values(&["sent"])
        .get();
    assert_eq!(
        recorded,
        RESULTS as u64 - 1,
        "each stored result counted once"
    );
    assert_eq!(pipeline.metrics.results_duplicates.get(), 1);
    let status = store.run_status("rb").await.expect("status");
    assert_eq!(status.counts.sent, RESULTS as u64 - 1);
    // The refused result went to the dead letters with the database's reason; nothing else.
    let dead = pipeline.dead().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let body: serde_json::Value = serde_json::from_slice(&dead[0].0).expect("json");
    assert_eq!(body["job_id"], REFUSED);
    assert!(dead[0].1.contains("refused by the test"), "{}", dead[0].1);
    // Results were written many to a transaction: every item but the refused one committed
    // once (the duplicate too, as a duplicate), in a few dozen transactions at most, the
    // halvings that found the refused row included.
    let batches = pipeline
        .metrics
        .consumer_batch_items
        .with_label_values(&["results"]);
    assert_eq!(batches.get_sample_sum(), RESULTS as f64);
    assert!(
        batches.get_sample_count() <= 60,
        "{} transactions",
        batches.get_sample_count()
    );
    // The run is unknown to this store: said once.
    assert_eq!(pipeline.metrics.results_unknown_run.get(), 1);
    pipeline.stop().await;
}

/// People whose events are interleaved with everyone else's.
const PEOPLE: usize = 40;

async fn one_persons_events_stay_in_order_under_concurrent_ingest(rig: Rig) {
    let Some(pipeline) = Pipeline::new("test-batch-order", rig.store.clone()).await else {
        return;
    };
    // Round by round, each person does the same step: a ref to a first id, a ref to a second
    // id (a relink), then two opt changes, which even people end opted in and odd people out.
    let psid = |i: usize| format!("{}", 3_000 + i);
    let mut bodies = Vec::new();
    for step in 0..4_i64 {
        for i in 0..PEOPLE {
            let at = t1() + step * 1_000 + i as i64;
            let item = match step {
                0 => message(
                    &psid(i),
                    at,
                    &format!("m_{i}_a"),
                    Some(&format!("ext-{i}-a")),
                ),
                1 => message(
                    &psid(i),
                    at,
                    &format!("m_{i}_b"),
                    Some(&format!("ext-{i}-b")),
                ),
                2 | 3 => {
                    let stop = (step == 2) == (i % 2 == 0);
                    marketing(&psid(i), at, Some(if stop { "STOP" } else { "RESUME" }))
                }
                _ => unreachable!(),
            };
            bodies.push(json!([entry(vec![item])]));
        }
    }
    // Many POSTs at once, so the ingest has many bodies in hand, but each person's steps are
    // sent in order: a round is posted only after the previous one was accepted.
    for round in bodies.chunks(PEOPLE) {
        futures_util::future::join_all(round.iter().map(|body| pipeline.post(body.clone()))).await;
    }
    pipeline.ingested((PEOPLE * 4) as u64).await;
    let by_psid = pipeline.by_psid().await;
    for i in 0..PEOPLE {
        let user = by_psid
            .get(&psid(i))
            .unwrap_or_else(|| panic!("{} missing", psid(i)));
        assert_eq!(user.external_id, format!("ext-{i}-b"), "the later ref wins");
        let expected = if i % 2 == 0 { "false" } else { "true" };
        assert_eq!(
            user.attributes[OPTED_OUT_ATTRIBUTE], expected,
            "person {i}: the later opt change wins"
        );
    }
    pipeline.stop().await;
}
