//! Local-time delivery and quiet hours with the real producer (`herald campaign send`),
//! RabbitMQ, a worker and the simulator, on the real clock. The campaign's local time is 15
//! seconds from now on the clock of Kiritimati (UTC+14). Three time zones show that time at the
//! same instant, on two different dates across the date line: Pacific/Kiritimati (+14),
//! Pacific/Honolulu (-10) and Etc/GMT+10 (-10), none with daylight saving time. So the users in
//! those three zones are each due 15 s after the send, at their own local time, and are sent
//! then and not before; the users in UTC, Kolkata (+5:30) and São Paulo (-3) are due hours away
//! and wait in the broker (the 1 h retry tier, not a worker) with `not_before` at their own next
//! local time, computed here by hand. A second campaign whose quiet hours (on a UTC clock)
//! began a minute ago and end 15 s from now holds its user's job until they end.

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

/// `at` on a clock `offset` from UTC, as "HH:MM:SS".
fn clock(at: OffsetDateTime, offset: UtcOffset) -> String {
    let at = at.to_offset(offset);
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

fn campaign(id: &str, extra: &str) -> String {
    format!(
        "id = \"{id}\"\npage_id = \"{PAGE}\"\nmessaging_type = \"UPDATE\"\n[message]\n\
         text = \"Hi\"\n[segment]\nfile = \"{id}.csv\"\n[delivery]\nwindow = \"off\"\n{extra}"
    )
}

/// The first instant at or after `from` when a clock at `offset` shows `time_of_day`: done by
/// hand, without the code under test.
fn next_at(from: OffsetDateTime, time_of_day: time::Time, offset: UtcOffset) -> OffsetDateTime {
    let local_date = from.to_offset(offset).date();
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
         sao-paulo,9103,America/Sao_Paulo\nkiritimati,9105,Pacific/Kiritimati\n\
         honolulu,9106,Pacific/Honolulu\ngmt-10,9107,Etc/GMT+10\n",
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
    let kiritimati = UtcOffset::from_hms(14, 0, 0).expect("offset");
    let local = campaign(
        "local",
        &format!("[schedule]\nlocal_time = \"{}\"\n", clock(due, kiritimati)),
    );
    let quiet = campaign(
        "quiet",
        &format!(
            "quiet_hours = {{ start = \"{}\", end = \"{}\" }}\n",
            clock(now - time::Duration::seconds(60), UtcOffset::UTC),
            clock(due, UtcOffset::UTC)
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

    assert_eq!(rig.wait_results(4, WAIT).await, 4, "{:?}", rig.seen);
    let by_job = rig.by_job();
    let sent: Vec<_> = by_job
        .values()
        .map(|r| (r.external_id.as_str(), r.status))
        .collect();
    assert_eq!(
        sent.iter()
            .filter(|(_, status)| *status == ResultStatus::Sent)
            .count(),
        4,
        "{sent:?}"
    );
    // Kiritimati, Honolulu and Etc/GMT+10 at their local time; the night owl after quiet hours.
    for psid in ["9105", "9106", "9107", "9104"] {
        let messages = rig.sim.messages(psid);
        assert_eq!(messages.len(), 1, "{psid}");
        let late = messages[0].accepted_at_ms - ms(due);
        assert!(late >= 0, "{psid} was sent {} ms before it was due", -late);
        // Held in 5 s steps: it goes out within one step of its time (with room for a busy
        // machine), not a tier later.
        assert!(late <= 10_000, "{psid} was sent {late} ms after it was due");
    }
    for psid in ["9101", "9102", "9103"] {
        assert!(
            rig.sim.messages(psid).is_empty(),
            "{psid} was sent hours early"
        );
    }

    // The other three wait in the 1 h tier, each due at its own next local time.
    worker.stop().await;
    let mut waiting = Consumer::start(
        &rig.connection,
        &rig.topology.retry_queue(RetryTier::OneHour),
        8,
    )
    .await
    .expect("consume the 1 h tier");
    let mut due_at = BTreeMap::new();
    while due_at.len() < 3 {
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
    let local_time = due.to_offset(kiritimati).time();
    for (user, offset) in [
        ("utc", (0, 0)),
        ("kolkata", (5, 30)),
        ("sao-paulo", (-3, 0)),
    ] {
        let offset = UtcOffset::from_hms(offset.0, offset.1, 0).expect("offset");
        assert_eq!(
            due_at[user],
            Some(next_at(now, local_time, offset)),
            "{user}"
        );
    }
    rig.cleanup().await;
}
