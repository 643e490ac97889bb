//! Delivery records on both databases (see `store.rs` for the rig): results recorded once per
//! job, a run's status (counts, delivered, read, top error codes), and delivery and read
//! receipts by watermark and by `mids`, including a receipt that arrives before its result.

use herald_core::{DeliveryResult, ErrorClass, ErrorInfo, RESULT_VERSION, ResultStatus};
use herald_store::{ErrorCount, RECEIPT_SLACK, StatusCounts, Store, UserRecord};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::store::{Rig, both_backends, users};

both_backends!(
    results_once_and_run_status,
    receipts_by_watermark_and_mids,
    a_replayed_job_shows_its_final_result,
);

const PAGE: &str = "1000000001";
const T0: OffsetDateTime = datetime!(2026-11-21 09:00 UTC);

fn result(run: &str, user: &str, status: ResultStatus, at: OffsetDateTime) -> DeliveryResult {
    DeliveryResult {
        v: RESULT_VERSION,
        job_id: format!("{run}:{user}"),
        run_id: run.to_owned(),
        campaign_id: "welcome-back".to_owned(),
        external_id: user.to_owned(),
        page_id: PAGE.to_owned(),
        status,
        message_id: (status == ResultStatus::Sent).then(|| format!("m_{user}")),
        error: None,
        attempts: u32::from(status != ResultStatus::Skipped),
        finished_at: at,
    }
}

fn failed(run: &str, user: &str, code: u32, subcode: Option<u32>) -> DeliveryResult {
    DeliveryResult {
        error: Some(ErrorInfo {
            code: Some(code),
            subcode,
            class: Some(ErrorClass::DropUser),
            message: "graph said no".to_owned(),
            fbtrace_id: Some("AbC".to_owned()),
        }),
        ..result(run, user, ResultStatus::Failed, T0)
    }
}

async fn results_once_and_run_status(rig: Rig) {
    let store = &rig.store;
    let first = result("r1", "u1", ResultStatus::Sent, T0);
    assert!(
        store
            .record_result(&first, Some("p1"))
            .await
            .expect("record")
    );
    // Redelivered, then contradicted by an older failure: the sent result stays.
    assert!(
        !store
            .record_result(&first, Some("p1"))
            .await
            .expect("again")
    );
    let late = failed("r1", "u1", 2, None);
    assert!(!store.record_result(&late, None).await.expect("late"));

    // Error codes by frequency: 10/2018278 ×4, 551 ×3, 100 ×2, 613 ×2, 10 (no subcode) ×2,
    // 230 ×1: the top five, ties by code and then subcode.
    let codes: [(u32, Option<u32>, usize); 6] = [
        (10, Some(2_018_278), 4),
        (551, None, 3),
        (100, None, 2),
        (613, None, 2),
        (10, None, 2),
        (230, None, 1),
    ];
    let mut n = 0;
    for (code, subcode, times) in codes {
        for _ in 0..times {
            n += 1;
            let r = failed("r1", &format!("f{n}"), code, subcode);
            assert!(store.record_result(&r, None).await.expect("failed"));
        }
    }
    for (user, status, minutes) in [
        ("s1", ResultStatus::Skipped, 0),
        ("s2", ResultStatus::Skipped, 0),
        ("d1", ResultStatus::Dead, 5),
        ("e1", ResultStatus::Expired, 7),
        ("c1", ResultStatus::Cancelled, 3),
    ] {
        let r = result("r1", user, status, T0 + Duration::minutes(minutes));
        store.record_result(&r, None).await.expect("other");
    }
    let other_run = result("r2", "u1", ResultStatus::Sent, T0 + Duration::hours(5));
    store.record_result(&other_run, None).await.expect("r2");

    let status = store.run_status("r1").await.expect("status");
    let expected = StatusCounts {
        sent: 1,
        failed: 14,
        dead: 1,
        expired: 1,
        skipped: 2,
        cancelled: 1,
    };
    assert_eq!(status.counts, expected);
    assert_eq!(status.counts.get(ResultStatus::Failed), 14);
    assert_eq!(status.total, 20);
    assert_eq!((status.delivered, status.read), (0, 0));
    let top: Vec<(u32, Option<u32>, u64)> = status
        .top_errors
        .iter()
        .map(
            |&ErrorCount {
                 code,
                 subcode,
                 count,
             }| (code, subcode, count),
        )
        .collect();
    assert_eq!(
        top,
        [
            (10, Some(2_018_278), 4),
            (551, None, 3),
            (10, None, 2),
            (100, None, 2),
            (613, None, 2),
        ]
    );
    assert_eq!(status.first_finished_at, Some(T0));
    assert_eq!(status.last_finished_at, Some(T0 + Duration::minutes(7)));
    assert_eq!(store.run_status("nope").await.expect("empty").total, 0);
}

async fn delivered_read(store: &Store, run: &str) -> (u64, u64) {
    let status = store.run_status(run).await.expect("status");
    (status.delivered, status.read)
}

async fn receipts_by_watermark_and_mids(rig: Rig) {
    let store = &rig.store;
    // u1's PSID on the page comes from an import; the results below carry no PSID for b and c.
    let mut u1 = UserRecord::new("u1");
    u1.messenger_id = Some("p1".to_owned());
    u1.page_id = Some(PAGE.to_owned());
    store.upsert_users(&[u1]).await.expect("import");
    let minutes = |m: i64| T0 + Duration::minutes(m);
    let sent = |run: &str, at| result(run, "u1", ResultStatus::Sent, at);
    store
        .record_result(&sent("a", minutes(0)), Some("p1"))
        .await
        .expect("a");
    store
        .record_result(&sent("b", minutes(10)), None)
        .await
        .expect("b");
    let mut skipped = result("s", "u1", ResultStatus::Skipped, minutes(0));
    skipped.message_id = None;
    store.record_result(&skipped, Some("p1")).await.expect("s");

    // The watermark covers a only; a repeat changes nothing; mids reach b.
    assert_eq!(
        store
            .mark_delivered(PAGE, "p1", minutes(1), &[])
            .await
            .expect("wm"),
        1
    );
    assert_eq!(
        store
            .mark_delivered(PAGE, "p1", minutes(1), &[])
            .await
            .expect("again"),
        0
    );
    let mids = ["m_u1".to_owned()];
    assert_eq!(delivered_read(store, "b").await, (0, 0));
    assert_eq!(
        store
            .mark_delivered(PAGE, "p1", minutes(1), &mids)
            .await
            .expect("mids"),
        1
    );
    assert_eq!(
        store
            .mark_delivered(PAGE, "p1", minutes(1), &mids)
            .await
            .expect("again"),
        0
    );
    assert_eq!(delivered_read(store, "a").await, (1, 0));
    assert_eq!(delivered_read(store, "b").await, (1, 0));
    assert_eq!(
        delivered_read(store, "s").await,
        (0, 0),
        "skipped is never delivered"
    );

    // Read by watermark: a only; then c (not yet delivered) and b: read implies delivered.
    assert_eq!(
        store.mark_read(PAGE, "p1", minutes(1)).await.expect("read"),
        1
    );
    assert_eq!(
        store
            .mark_read(PAGE, "p1", minutes(1))
            .await
            .expect("again"),
        0
    );
    assert_eq!(delivered_read(store, "a").await, (1, 1));
    store
        .record_result(&sent("c", minutes(20)), None)
        .await
        .expect("c");
    assert_eq!(
        store
            .mark_read(PAGE, "p1", minutes(21))
            .await
            .expect("read"),
        2
    );
    assert_eq!(delivered_read(store, "b").await, (1, 1));
    assert_eq!(delivered_read(store, "c").await, (1, 1));
    // An older watermark arriving late changes nothing.
    assert_eq!(
        store
            .mark_read(PAGE, "p1", minutes(15))
            .await
            .expect("late"),
        0
    );
    // Another PSID's receipt touches none of u1's records.
    assert_eq!(
        store.mark_read(PAGE, "p2", minutes(60)).await.expect("p2"),
        0
    );

    // A receipt before its result: remembered and applied when the result is recorded, with
    // the slack for our finished_at being a little after Meta's watermark.
    let slack = Duration::try_from(RECEIPT_SLACK).expect("slack");
    assert_eq!(
        store
            .mark_delivered(PAGE, "p9", minutes(30), &[])
            .await
            .expect("early"),
        0
    );
    assert_eq!(
        store
            .mark_read(PAGE, "p9", minutes(29))
            .await
            .expect("early"),
        0
    );
    let within = minutes(30) + slack / 2;
    store
        .record_result(&sent("d", within), Some("p9"))
        .await
        .expect("d");
    assert_eq!(delivered_read(store, "d").await, (1, 0));
    store
        .record_result(&sent("e", minutes(29)), Some("p9"))
        .await
        .expect("e");
    assert_eq!(delivered_read(store, "e").await, (1, 1));
    store
        .record_result(&sent("f", minutes(31)), Some("p9"))
        .await
        .expect("f");
    assert_eq!(
        delivered_read(store, "f").await,
        (0, 0),
        "sent after the watermark"
    );

    // A stranger streamed under an anon id: the result names only that id, and the store finds
    // the PSID the job went to.
    store
        .record_inbound(PAGE, "p5", minutes(0), None)
        .await
        .expect("stranger");
    let stranger = users(store, PAGE)
        .await
        .into_values()
        .find(|user| user.messenger_id.as_deref() == Some("p5"))
        .expect("stranger streamed");
    let g = result("g", &stranger.external_id, ResultStatus::Sent, minutes(40));
    store.record_result(&g, None).await.expect("g");
    assert_eq!(
        store
            .mark_delivered(PAGE, "p5", minutes(41), &[])
            .await
            .expect("p5"),
        1
    );
    assert_eq!(delivered_read(store, "g").await, (1, 0));
}

/// A dead job replayed and then sent shows `sent` (counted once), and its history keeps both;
/// after `sent` nothing changes the record, a repeat or an older result included, and each of
/// those is in the history too.
async fn a_replayed_job_shows_its_final_result(rig: Rig) {
    let store = &rig.store;
    let dead = result("r9", "u1", ResultStatus::Dead, T0);
    assert!(store.record_result(&dead, Some("p9")).await.expect("dead"));
    let replayed = result("r9", "u1", ResultStatus::Sent, T0 + Duration::minutes(30));
    assert!(
        store.record_result(&replayed, None).await.expect("sent"),
        "the replay's result is shown"
    );
    let repeat = result("r9", "u1", ResultStatus::Sent, T0 + Duration::minutes(31));
    assert!(!store.record_result(&repeat, None).await.expect("repeat"));
    let older = result("r9", "u1", ResultStatus::Dead, T0 + Duration::minutes(40));
    assert!(!store.record_result(&older, None).await.expect("after sent"));

    let status = store.run_status("r9").await.expect("status");
    assert_eq!(
        (status.total, status.counts.sent, status.counts.dead),
        (1, 1, 0)
    );
    // The record keeps the PSID it went to, so receipts still find it.
    assert_eq!(
        store
            .mark_delivered(PAGE, "p9", T0 + Duration::minutes(31), &[])
            .await
            .expect("delivered"),
        1
    );
    let history = store.delivery_history("r9:u1").await.expect("history");
    let seen: Vec<(&str, bool)> = history
        .iter()
        .map(|entry| (entry.status.as_str(), entry.shown))
        .collect();
    assert_eq!(
        seen,
        [
            ("dead", false),
            ("sent", true),
            ("sent", false),
            ("dead", false)
        ],
        "{history:?}"
    );
    assert_eq!(history[1].message_id.as_deref(), Some("m_u1"));
    assert!(
        store
            .delivery_history("nope")
            .await
            .expect("none")
            .is_empty()
    );
}
