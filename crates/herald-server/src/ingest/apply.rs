//! Applying one `Event` to a store batch, once: `seen_event(key)` first, then the write. Inbound
//! actions → `record_inbound` (identity, `last_inbound_at`, `ref` link); receipts →
//! `mark_delivered` / `mark_read`; marketing stop/resume → `set_opt_out`. Echoes, checkbox
//! opt-ins and unknown items write nothing and are counted; a policy block is logged loudly and
//! becomes a `halt_page` control message (an unblock, `resume_page`) for the caller to publish.
//!
//! Dedupe and at-least-once: the key and the write commit in one transaction, so a known key
//! means its write is stored. But a policy event's control message is published after the
//! commit, and a crash in between leaves the key known and the message unsent; so the caller
//! says when a try may repeat an interrupted one (`again`: the broker redelivered the body, or a
//! store failure interrupted the batch), and then the event is applied even for a known key.
//! Every store write here is idempotent (times only move forward, a receipt marks a record
//! once), so repeating it changes nothing twice. Metrics are counted by the caller after the
//! commit, from what `apply` returns.

use herald_core::{ControlAction, ControlMessage};
use herald_store::{Batch, StoreError};
use time::OffsetDateTime;
use tracing::{debug, error, info, warn};

use super::event::{Event, PolicyAction};

/// What applying one event did, for the metrics counted after the commit.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The control message the event calls for, to publish after the commit.
    pub(crate) control: Option<ControlMessage>,
    /// The event's `kind` label.
    pub(crate) kind: &'static str,
    /// `applied`, `duplicate` or `ignored`.
    pub(crate) outcome: &'static str,
    /// A fresh policy enforcement's `action` label.
    pub(crate) policy: Option<&'static str>,
}

/// Applies `event` inside `batch`.
pub(crate) async fn apply(
    batch: &mut Batch,
    event: &Event,
    again: bool,
) -> Result<Applied, StoreError> {
    let kind = event.kind();
    let fresh = match event.dedupe_key() {
        Some(key) => batch.seen_event(&key).await?,
        None => true,
    };
    let mut applied = Applied {
        control: None,
        kind,
        outcome: "duplicate",
        policy: None,
    };
    if !fresh && !again {
        debug!(kind, "Webhook event already applied; skipped.");
        return Ok(applied);
    }
    let written = match event {
        Event::Inbound {
            page,
            psid,
            at_ms,
            reference,
            ..
        } => {
            let at = time(*at_ms);
            batch
                .record_inbound(page, psid, at, reference.as_deref())
                .await?;
            true
        }
        Event::Delivered {
            page,
            psid,
            watermark_ms,
            mids,
        } => {
            let changed = batch
                .mark_delivered(page, psid, time(*watermark_ms), mids)
                .await?;
            debug!(changed, "Delivery receipt applied.");
            true
        }
        Event::Read {
            page,
            psid,
            watermark_ms,
        } => {
            let changed = batch.mark_read(page, psid, time(*watermark_ms)).await?;
            debug!(changed, "Read receipt applied.");
            true
        }
        Event::OptChange {
            page,
            psid,
            opted_out,
            at_ms,
        } => {
            batch
                .set_opt_out(page, psid, *opted_out, time(*at_ms))
                .await?;
            true
        }
        Event::Echo { .. } => false,
        Event::CheckboxOptIn { page } => {
            info!(page_id = %page, "Checkbox plugin opt-in (user_ref, no PSID): not stored; \
                the PSID arrives with the person's first message.");
            false
        }
        Event::Policy {
            page,
            action,
            reason,
            ..
        } => {
            if fresh {
                applied.policy = Some(action.as_str());
            }
            applied.control = policy(page, *action, reason.as_deref());
            applied.control.is_some()
        }
        Event::Ignored(_) => false,
    };
    applied.outcome = if !fresh {
        "duplicate"
    } else if written {
        "applied"
    } else {
        "ignored"
    };
    Ok(applied)
}

/// Logs a policy enforcement at the level it deserves and says what the fleet must do.
fn policy(page: &str, action: PolicyAction, reason: Option<&str>) -> Option<ControlMessage> {
    let reason = reason.unwrap_or("none given");
    match action {
        PolicyAction::Block => {
            error!(page_id = %page, meta_reason = %reason,
                "Meta BLOCKED the page under its messaging policy; halting its sends fleet-wide. \
                 Resume with `herald campaign resume --page` once Meta lifts the block.");
            let why = "messaging_policy_enforcement: block".to_owned();
            Some(ControlMessage::for_page(
                ControlAction::HaltPage,
                page,
                Some(why),
            ))
        }
        PolicyAction::Unblock => {
            warn!(page_id = %page, "Meta lifted the policy block on the page; resuming its sends.");
            let why = "messaging_policy_enforcement: unblock".to_owned();
            Some(ControlMessage::for_page(
                ControlAction::ResumePage,
                page,
                Some(why),
            ))
        }
        PolicyAction::Warning => {
            warn!(page_id = %page, meta_reason = %reason,
                "Meta WARNED the page under its messaging policy; a block may follow.");
            None
        }
        PolicyAction::Other => {
            warn!(page_id = %page, meta_reason = %reason,
                "Policy enforcement event with an unknown action; not acted on.");
            None
        }
    }
}

/// Epoch milliseconds as a time (`parse` accepts only years 1970 to 9999, so this never clamps).
fn time(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
