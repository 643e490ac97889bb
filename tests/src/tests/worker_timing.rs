//! Jobs that know their time, against RabbitMQ, the simulator and a worker: a job due later
//! waits in the broker's retry tiers and is sent once due, not before; a job whose user's
//! 24-hour window closed while it waited in the queue is `skipped` (`outside_window`) by the
//! worker, never sent; one whose window closes before it is due is skipped at once.

use std::time::Duration;

use herald_core::ResultStatus;
use herald_sim::SimConfig;
use time::OffsetDateTime;

use crate::eventually;
use crate::worker_rig::{PAGE, Rig, job, sample};

const WAIT: Duration = Duration::from_secs(60);

/// `job` with extra fields (`not_before`, `window_closes_at`) set to these times.
fn timed(external_id: &str, psid: &str, fields: &[(&str, OffsetDateTime)]) -> Vec<u8> {
    let mut value: serde_json::Value =
        serde_json::from_slice(&job("run-timed", PAGE, external_id, psid)).expect("job");
    for (name, at) in fields {
        let at = at
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format");
        value[*name] = serde_json::Value::String(at);
    }
    serde_json::to_vec(&value).expect("JSON")
}

fn in_secs(secs: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::seconds(secs)
}

#[tokio::test]
async fn a_job_waits_until_it_is_due_and_one_whose_window_closed_is_skipped() {
    let Some(mut rig) = Rig::new("test-worker-timing", SimConfig::default()).await else {
        return;
    };
    // Published before any worker runs: the first job's window closes while it waits.
    let due = in_secs(6);
    rig.publish(&[
        timed("closed", "8101", &[("window_closes_at", in_secs(1))]),
        timed("later", "8102", &[("not_before", due)]),
        timed(
            "closes-first",
            "8103",
            &[
                ("not_before", in_secs(60)),
                ("window_closes_at", in_secs(30)),
            ],
        ),
    ])
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let worker = rig.spawn(rig.settings());
    let ready = eventually(WAIT, || async { worker.health.is_ready() }).await;
    assert!(ready, "the worker never became ready");

    assert_eq!(rig.wait_results(3, WAIT).await, 3);
    let by_job = rig.by_job();
    for user in ["closed", "closes-first"] {
        let result = &by_job[&format!("run-timed:{user}")];
        assert_eq!(result.status, ResultStatus::Skipped, "{result:?}");
        let reason = result.error.as_ref().map(|e| e.message.as_str());
        assert!(
            reason.is_some_and(|m| m.starts_with("outside_window")),
            "{result:?}"
        );
        assert_eq!(result.attempts, 0, "{result:?}");
    }
    assert!(
        rig.sim.messages("8101").is_empty(),
        "a closed window was sent to"
    );
    assert!(rig.sim.messages("8103").is_empty());

    let later = &by_job["run-timed:later"];
    assert_eq!(later.status, ResultStatus::Sent, "{later:?}");
    let sent = &rig.sim.messages("8102");
    assert_eq!(sent.len(), 1);
    let due_ms = (due.unix_timestamp_nanos() / 1_000_000) as i64;
    assert!(
        sent[0].accepted_at_ms >= due_ms,
        "sent {} ms before it was due",
        due_ms - sent[0].accepted_at_ms
    );
    let metrics = worker.metrics.encode();
    assert!(
        sample(&metrics, "herald_jobs_held_total{reason=\"not_due\"}").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    worker.stop().await;
    rig.cleanup().await;
}
