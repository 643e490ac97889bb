//! `DeliveryResult` v1: the one terminal outcome of every user the producer considered,
//! published to `herald.results` with routing key `<status>.<campaign_id>` (ARCHITECTURE.md,
//! "Wire formats").

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ErrorClass;

/// The wire version this build writes and reads.
pub const RESULT_VERSION: u32 = 1;

/// A terminal status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// Graph accepted the message.
    Sent,
    /// A permanent error for this user or request.
    Failed,
    /// Attempts exhausted; the job sits in `herald.dead`.
    Dead,
    /// Not sent before `not_after`.
    Expired,
    /// The producer decided not to send (blank PSID, window, opt-out, limits, duplicate).
    Skipped,
    /// The run was cancelled before the job was sent.
    Cancelled,
}

impl ResultStatus {
    /// Bounded label, and the first part of the routing key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Expired => "expired",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Why a job did not end as `sent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Graph error code, when Graph answered with one.
    pub code: Option<u32>,
    /// Graph `error_subcode`, when present.
    pub subcode: Option<u32>,
    /// The class the failure fell into; absent for producer skips.
    pub class: Option<ErrorClass>,
    /// Human-readable reason (Graph's message, or the skip reason). Never holds a token.
    pub message: String,
    /// Graph's support trace id, when present.
    pub fbtrace_id: Option<String>,
}

/// The outcome of one job, or of one user the producer skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryResult {
    /// Wire format version; `RESULT_VERSION`.
    pub v: u32,
    /// `<run_id>:<external_id>`.
    pub job_id: String,
    /// The campaign run.
    pub run_id: String,
    /// The campaign's id.
    pub campaign_id: String,
    /// The user's id in the customer's systems.
    pub external_id: String,
    /// The sending Page.
    pub page_id: String,
    /// The terminal status.
    pub status: ResultStatus,
    /// Graph's `message_id` when sent.
    pub message_id: Option<String>,
    /// Why it was not sent, when it was not.
    pub error: Option<ErrorInfo>,
    /// Graph calls made for this job.
    pub attempts: u32,
    /// When the outcome was decided.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
}

impl DeliveryResult {
    /// `<status>.<campaign_id>`, the routing key on `herald.results`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.status.as_str(), self.campaign_id)
    }
}
