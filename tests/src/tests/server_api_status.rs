//! The store query behind a run's current rate (`Store::recent_results`), on SQLite and
//! PostgreSQL: only results a worker decided count (not `skipped`), only those of the window,
//! only the run's own, with the first and last time among them.

use herald_core::{DeliveryResult, RESULT_VERSION, ResultStatus};
use time::OffsetDateTime;
use time::macros::datetime;

use super::store::{PAGE, Rig, both_backends};

both_backends!(recent_results_count_worker_results_of_the_window);

const T0: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);

fn result(run: &str, user: &str, status: ResultStatus, seconds: i64) -> DeliveryResult {
    DeliveryResult {
        v: RESULT_VERSION,
        job_id: format!("{run}:{user}"),
        run_id: run.to_owned(),
        campaign_id: "status-test".to_owned(),
        external_id: user.to_owned(),
        page_id: PAGE.to_owned(),
        status,
        message_id: (status == ResultStatus::Sent).then(|| format!("m_{user}")),
        error: None,
        attempts: 1,
        finished_at: T0 + time::Duration::seconds(seconds),
    }
}

async fn recent_results_count_worker_results_of_the_window(rig: Rig) {
    let store = &rig.store;
    use ResultStatus::*;
    for (run, user, status, at) in [
        ("r1", "old", Sent, -120),
        ("r1", "skip", Skipped, 5),
        ("r1", "a", Sent, 10),
        ("r1", "b", Failed, 20),
        ("r1", "c", Cancelled, 30),
        ("r2", "other", Sent, 15),
    ] {
        assert!(
            store
                .record_result(&result(run, user, status, at), None)
                .await
                .expect("record")
        );
    }
    let recent = store
        .recent_results("r1", T0)
        .await
        .expect("recent results");
    assert_eq!(
        recent.count, 3,
        "sent, failed and cancelled since T0; not skipped, not older"
    );
    assert_eq!(
        recent.first_finished_at,
        Some(T0 + time::Duration::seconds(10))
    );
    assert_eq!(
        recent.last_finished_at,
        Some(T0 + time::Duration::seconds(30))
    );
    let all = store
        .recent_results("r1", T0 - time::Duration::hours(1))
        .await
        .expect("recent results");
    assert_eq!(all.count, 4);
    let none = store
        .recent_results("r-none", T0)
        .await
        .expect("recent results");
    assert_eq!((none.count, none.first_finished_at), (0, None));
}
