//! Action-based campaigns: stored campaigns with a `[trigger]`, sent to one person when they
//! do something. The ingest (a postback, a quick reply, a referral's `ref`, a keyword in a
//! message) and `/users/track` (an event) record a fire per campaign the action matches
//! (`record.rs`), in the store, keyed by (campaign, event) so an event delivered twice fires
//! once, and due when the campaign's `delay` has passed; `dispatch.rs`, a task of every
//! `herald serve`, claims due fires, plans each one's job with the producer's `Planner`
//! (filters on the person's profile now, the 24-hour window, opt-out, Meta's limits,
//! `once_per`), publishes it with publisher confirms and marks the fire settled. A delay is
//! waited out in the store, so what is sent is decided when it is sent.
//!
//! Each campaign's fires of one UTC day are one run, `<campaign_id>@<yyyy-mm-dd>`, so
//! `campaign status` and pause or cancel work per day; a job's id is
//! `<run_id>:<external_id>:<fire>`, `<fire>` naming the event.

mod dispatch;
mod record;

pub(crate) use dispatch::{DispatchSettings, run_dispatcher};
pub use record::Cue;
pub use record::{Fired, MAX_EVENT_SKEW_MS};
pub(crate) use record::{InboundAction, TrackedEvent, record_events, record_inbound};

/// The run of `campaign_id`'s fires received on the UTC day of `received_at_ms`.
pub fn day_run_id(campaign_id: &str, received_at_ms: i64) -> String {
    let day = time::OffsetDateTime::from_unix_timestamp(received_at_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!("{campaign_id}@{day}")
}

/// Whether `run_id` is the day run of a triggered campaign (no other run id has an `@`).
pub fn is_day_run(run_id: &str) -> bool {
    run_id.contains('@')
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_day_run_is_named_by_the_utc_day() {
        // 2026-12-07T23:59:59.999Z and one millisecond later.
        assert_eq!(
            super::day_run_id("welcome", 1_796_687_999_999),
            "welcome@2026-12-07"
        );
        assert_eq!(
            super::day_run_id("welcome", 1_796_688_000_000),
            "welcome@2026-12-08"
        );
    }
}
