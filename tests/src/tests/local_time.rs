//! Local-time delivery and quiet hours with the real producer (`herald campaign send`),
//! RabbitMQ, a worker and the simulator. The clock is not compressed: the campaign's local
//! time is 15 seconds from now on a UTC clock ("HH:MM:SS"), so the user in UTC is due 15 s after
//! the send, and the users in Kolkata (UTC+5:30) and São Paulo (UTC-3), zones without daylight
//! saving time, are due hours away. The first is sent at its time and not before; the other two
//! wait in the broker (in the 1 h retry tier, not in a worker) with `not_before` at their own
//! next local time, computed here by hand. A second campaign whose quiet hours began a minute
//! ago and end 15 s from now holds its user's job until they end.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use herald_amqp::{Consumer, RetryTier};
use herald_core::{ResultStatus, SendJob};
use herald_sim::SimConfig;
use time::{OffsetDateTime, UtcOffset};

use crate::eventually;
use crate::worker_rig::{PAGE, Rig};

const WAIT: Duration = Duration::from_secs(60);

fn clock(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

fn campaign(id: &str, extra: &str) -> String {
    format!(
        "id = \"{id}\"\npage_id = \"{PAGE}\"\nmessaging_type = \"UPDATE\"\n[message]\n\
         text = \"Hi\"\n[segment]\nfile = \"{id}.csv\"\n[delivery]\nwindow = \"off\"\n{extra}"
    )
}

/// The first instant at or after `from` when a clock at `offset` shows the time of day of
/// `due_utc` (a UTC instant): done by hand, without the code under test.
fn next_at(from: OffsetDateTime, due_utc: OffsetDateTime, offset: UtcOffset) -> OffsetDateTime {
    let local_date = from.to_offset(offset).date();
    let time_of_day = due_utc.to_offset(UtcOffset::UTC).time();
    let mut candidate = local_date.with_time(time_of_day).assume_offset(offset);
    if candidate < from {
        candidate += time::Duration::days(1);
    }
    candidate.to_offset(UtcOffset::UTC)
}

fn ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test]
async fn each_user_is_due_at_their_local_time_and_quiet_hours_hold_a_job() {
    let Some(mut rig) = Rig::new("test-local-time", SimConfig::default()).await else {
        return;
    };
    let worker = rig.spawn(rig.settings());
    let ready = eventually(WAIT, || async { worker.health.is_ready() }).await;
    assert!(ready, "the worker never became ready");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("local.csv"),
        "external_id,messenger_id,time_zone\nutc,9101,UTC\nkolkata,9102,Asia/Kolkata\n\
         sao-paulo,9103,America/Sao_Paulo\n",
    )
    .expect("segment");
    std::fs::write(
        dir.path().join("quiet.csv"),
        "external_id,messenger_id\nnight-owl,9104\n",
    )
    .expect("segment");
    // Built before the clock starts: a build would eat the 15 seconds.
    crate::herald_bin();
    // Whole seconds, so the clock strings name exactly these instants.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns");
    let due = now + time::Duration::seconds(15);
    let local = campaign(
        "local",
        &format!("[schedule]\nlocal_time = \"{}\"\n", clock(due)),
    );
    let quiet = campaign(
        "quiet",
        &format!(
            "quiet_hours = {{ start = \"{}\", end = \"{}\" }}\n",
            clock(now - time::Duration::seconds(60)),
            clock(due)
        ),
    );
    std::fs::write(dir.path().join("local.toml"), local).expect("campaign");
    std::fs::write(dir.path().join("quiet.toml"), quiet).expect("campaign");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let env = [
        ("HERALD_TOPOLOGY_PREFIX", rig.prefix.as_str()),
        ("HERALD_DATABASE_URL", database.as_str()),
    ];
    for file in ["local.toml", "quiet.toml"] {
        let stdout = crate::herald_ok(dir.path(), &env, &["campaign", "send", file]).await;
        assert!(stdout.contains("published: "), "{stdout}");
    }

    assert_eq!(rig.wait_results(2, WAIT).await, 2, "{:?}", rig.seen);
    let by_job = rig.by_job();
    let sent: Vec<_> = by_job
        .values()
        .map(|r| (r.external_id.as_str(), r.status))
        .collect();
    assert_eq!(
        sent.iter()
            .filter(|(_, status)| *status == ResultStatus::Sent)
            .count(),
        2,
        "{sent:?}"
    );
    for psid in ["9101", "9104"] {
        let messages = rig.sim.messages(psid);
        assert_eq!(messages.len(), 1, "{psid}");
        let late = messages[0].accepted_at_ms - ms(due);
        assert!(late >= 0, "{psid} was sent {} ms before it was due", -late);
        // Held in 5 s steps: it goes out within one step of its time (with room for a busy
        // machine), not a tier later.
        assert!(late <= 10_000, "{psid} was sent {late} ms after it was due");
    }
    assert!(rig.sim.messages("9102").is_empty() && rig.sim.messages("9103").is_empty());

    // The other two wait in the 1 h tier, each due at its own next local time.
    worker.stop().await;
    let mut waiting = Consumer::start(
        &rig.connection,
        &rig.topology.retry_queue(RetryTier::OneHour),
        8,
    )
    .await
    .expect("consume the 1 h tier");
    let mut due_at = BTreeMap::new();
    while due_at.len() < 2 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), waiting.next())
            .await
            .expect("a waiting job")
            .expect("delivery")
            .expect("delivery");
        let job: SendJob = serde_json::from_slice(delivery.body()).expect("SendJob");
        due_at.insert(job.external_id.clone(), job.not_before);
        delivery.ack().await.expect("ack");
    }
    let _ = waiting.close().await;
    let kolkata = UtcOffset::from_hms(5, 30, 0).expect("offset");
    let sao_paulo = UtcOffset::from_hms(-3, 0, 0).expect("offset");
    assert_eq!(due_at["kolkata"], Some(next_at(now, due, kolkata)));
    assert_eq!(due_at["sao-paulo"], Some(next_at(now, due, sao_paulo)));
    rig.cleanup().await;
}
