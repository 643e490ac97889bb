//! `run_results` on both databases: results recorded once, poison dead-lettered while the next
//! result is still recorded; and a store that fails under both consumers loses nothing.

use serde_json::json;

use herald_core::ResultStatus;

use super::{PAGE, Pipeline, WAIT, entry, message, sent, t0, t1};
use crate::eventually;
use crate::tests::store::{Rig, both_backends, on_sqlite, users};

both_backends!(results_are_recorded_once);

async fn results_are_recorded_once(rig: Rig) {
    let Some(pipeline) = Pipeline::new("test-results-once", rig.store.clone()).await else {
        return;
    };
    let first = sent("r2", "u1", "m_r2_1", t0());
    let mut failed = sent("r2", "u2", "m_unused", t0());
    failed.status = ResultStatus::Failed;
    failed.message_id = None;
    let mut skipped = sent("r2", "u3", "m_unused", t0());
    skipped.status = ResultStatus::Skipped;
    skipped.message_id = None;
    skipped.attempts = 0;
    for result in [&first, &failed, &first, &skipped] {
        let body = serde_json::to_vec(result).expect("json");
        pipeline.publish_result(&body, &result.routing_key()).await;
    }
    // Poison, then a good result: the consumer keeps going.
    pipeline.publish_result(b"{not a result", "sent.x").await;
    let after = sent("r2", "u4", "m_r2_4", t0());
    let body = serde_json::to_vec(&after).expect("json");
    pipeline.publish_result(&body, &after.routing_key()).await;

    let store = &pipeline.store;
    let total = || async { store.run_status("r2").await.expect("status").total };
    assert!(eventually(WAIT, || async { total().await == 4 }).await);
    let processed = || {
        pipeline
            .metrics
            .consumer_messages
            .with_label_values(&["results", "processed"])
            .get()
    };
    assert!(eventually(WAIT, || async { processed() == 5 }).await);
    let status = store.run_status("r2").await.expect("status");
    assert_eq!(
        (
            status.counts.sent,
            status.counts.failed,
            status.counts.skipped
        ),
        (2, 1, 1)
    );
    let recorded = |status: &str| {
        pipeline
            .metrics
            .results_recorded
            .with_label_values(&[status])
            .get()
    };
    assert_eq!(
        (recorded("sent"), recorded("failed"), recorded("skipped")),
        (2, 1, 1)
    );
    assert_eq!(pipeline.metrics.results_duplicates.get(), 1);
    let dead = pipeline.dead().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, b"{not a result");
    assert!(dead[0].1.starts_with("not JSON"), "{}", dead[0].1);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_failing_store_loses_nothing() {
    on_sqlite(|rig| async move {
        let Some(pipeline) = Pipeline::new("test-ingest-storefail", rig.store.clone()).await else {
            return;
        };
        // Another connection to the same file takes the tables away.
        let admin = sqlx::SqlitePool::connect(rig.url.expose())
            .await
            .expect("sqlite");
        let rename = |from: &'static str, to: &'static str| {
            let admin = admin.clone();
            async move {
                sqlx::query(&format!("ALTER TABLE {from} RENAME TO {to}"))
                    .execute(&admin)
                    .await
                    .expect("rename");
            }
        };
        rename("identities", "identities_away").await;
        rename("deliveries", "deliveries_away").await;
        pipeline
            .post(json!([entry(vec![message(
                "501",
                t1(),
                "m_fail",
                Some("ext-fail")
            )])]))
            .await;
        let result = sent("r5", "u1", "m_r5", t0());
        let body = serde_json::to_vec(&result).expect("json");
        pipeline.publish_result(&body, &result.routing_key()).await;
        let errors = |consumer| {
            pipeline
                .metrics
                .consumer_store_errors
                .with_label_values(&[consumer])
                .get()
        };
        assert!(
            eventually(WAIT, || async {
                errors("ingest") >= 2 && errors("results") >= 2
            })
            .await
        );
        let queue = pipeline.web.topology.events_ingest_queue();
        assert_eq!(
            pipeline.web.ready(&queue).await,
            0,
            "held unacked, not requeued"
        );

        rename("identities_away", "identities").await;
        rename("deliveries_away", "deliveries").await;
        pipeline.ingested(1).await;
        let users = users(&pipeline.store, PAGE).await;
        assert_eq!(users["ext-fail"].messenger_id.as_deref(), Some("501"));
        let total = || async {
            pipeline
                .store
                .run_status("r5")
                .await
                .map(|s| s.total)
                .unwrap_or(0)
        };
        assert!(eventually(WAIT, || async { total().await == 1 }).await);
        admin.close().await;
        pipeline.stop().await;
    })
    .await;
}
