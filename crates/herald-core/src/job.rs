//! `SendJob` v1: one rendered Send API request for one user, the unit on `herald.send`
//! (ARCHITECTURE.md, "Wire formats"). The `request` is the exact JSON body, kept as raw bytes so
//! the worker passes it through without re-serialising. Page tokens are never in a job.
//!
//! `not_before`, `window_closes_at` and `quiet_hours` were added to v1 as optional fields,
//! written only when set: a worker of this version reads jobs with or without them, an older
//! one refuses a job that has them (it denies unknown fields), so workers are upgraded before
//! producers.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::local::JobQuietHours;

/// The wire version this build writes and reads.
pub const JOB_VERSION: u32 = 1;

/// One per-user send, as published to `herald.jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendJob {
    /// Wire format version; `JOB_VERSION`.
    pub v: u32,
    /// `<run_id>:<external_id>`: the dedup key downstream.
    pub job_id: String,
    /// The campaign run this job belongs to.
    pub run_id: String,
    /// The campaign's id.
    pub campaign_id: String,
    /// The Facebook Page that sends.
    pub page_id: String,
    /// The user's id in the customer's systems.
    pub external_id: String,
    /// The exact Send API body, rendered, with `message.metadata` = `job_id`.
    pub request: Box<RawValue>,
    /// The campaign's ceiling for its page, messages per second.
    pub rate_per_sec: u32,
    /// Graph calls allowed before the job is dead-lettered.
    pub max_attempts: u32,
    /// A job not sent by then becomes `expired`.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When the producer published it.
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_at: OffsetDateTime,
    /// Not sent before this (a campaign delivered at each user's local time, or quiet hours):
    /// until then the worker holds the job in the broker's retry tiers. Absent: due at once.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub not_before: Option<OffsetDateTime>,
    /// When the user's 24-hour window closes, for a campaign that enforces it and a user whose
    /// last message is known: a job not sent by then gets a `skipped` result
    /// (`outside_window`) from the worker instead of a Graph call. Absent: not checked.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub window_closes_at: Option<OffsetDateTime>,
    /// The campaign's quiet hours in the user's zone: a job that comes due inside them waits
    /// until they end. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<JobQuietHours>,
}

impl SendJob {
    /// Builds the dedup key for a user in a run.
    pub fn job_id_for(run_id: &str, external_id: &str) -> String {
        format!("{run_id}:{external_id}")
    }
}
