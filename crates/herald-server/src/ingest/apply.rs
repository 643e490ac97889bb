//! Applying a lane's events to a store batch, each once: the dedupe keys of the whole batch
//! first (`seen_events`, one statement), then each event in order. Inbound actions →
//! `record_inbound` (identity, `last_inbound_at`, `ref` link); marketing stop/resume →
//! `set_opt_out`; receipts are gathered and applied together at the end (`mark_receipts`,
//! which keeps their order per PSID; they commute with every other event); the echo of a
//! Herald job → `record_echo` (the send ledger's proof that Meta took it). Other echoes,
//! checkbox opt-ins and unknown items write nothing and are counted; a policy block is logged loudly and
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

use herald_core::clock::now_ms;
use herald_core::signed_ref::{RefCheck, RefKeys};
use herald_core::{ControlAction, ControlMessage};
use herald_store::{Batch, Link, Receipt, ReceiptKind, StoreError, TriggerEntry};
use time::OffsetDateTime;
use tracing::{debug, error, info, warn};

use super::event::{Event, PolicyAction};
use crate::fires::{Fired, InboundAction, record_inbound};
use crate::handler::Entry;

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
    /// What the action's `ref` did: `linked`, `unsigned`, `bad_signature`, `expired`,
    /// `kept_import` or `kept_newer`.
    pub(crate) reference: Option<&'static str>,
    /// The triggered campaigns the action fired.
    pub(crate) fired: Fired,
}

/// Applies a lane's `items` inside `batch`, in order; returns the control messages to publish
/// after the commit and what each event did.
pub(crate) async fn apply_all(
    batch: &mut Batch,
    refs: Option<&RefKeys>,
    items: &[Entry<Event>],
) -> Result<(Vec<ControlMessage>, Vec<Applied>), StoreError> {
    let keys: Vec<Option<String>> = items.iter().map(|entry| entry.item.dedupe_key()).collect();
    let known: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
    let mut fresh_keys = batch.seen_events(&known).await?.into_iter();
    // The triggered campaigns of the pages whose actions offer something, read once.
    let mut pages: Vec<&str> = items
        .iter()
        .filter_map(|entry| match &entry.item {
            Event::Inbound {
                page,
                reference,
                cue,
                ..
            } if reference.is_some() || !cue.is_empty() => Some(page.as_str()),
            _ => None,
        })
        .collect();
    pages.sort_unstable();
    pages.dedup();
    let triggers = batch.triggers_on_pages(&pages).await?;
    let mut receipts = Vec::new();
    let mut control = Vec::new();
    let mut report = Vec::with_capacity(items.len());
    for (entry, key) in items.iter().zip(&keys) {
        let fresh = key.is_none() || fresh_keys.next().unwrap_or(false);
        let mut applied = apply(
            batch,
            (refs, &triggers),
            &entry.item,
            (key.as_deref(), fresh),
            entry.again,
            &mut receipts,
        )
        .await?;
        control.extend(applied.control.take());
        report.push(applied);
    }
    let changed = batch.mark_receipts(&receipts).await?;
    debug!(receipts = receipts.len(), changed, "Receipts applied.");
    Ok((control, report))
}

/// Applies one `event` inside `batch` (a receipt is only added to `receipts`). `key`: its
/// dedupe key, and whether it was new.
async fn apply<'a>(
    batch: &mut Batch,
    (refs, triggers): (Option<&RefKeys>, &[TriggerEntry]),
    event: &'a Event,
    (key, fresh): (Option<&str>, bool),
    again: bool,
    receipts: &mut Vec<Receipt<'a>>,
) -> Result<Applied, StoreError> {
    let kind = event.kind();
    let mut applied = Applied {
        control: None,
        kind,
        outcome: "duplicate",
        policy: None,
        reference: None,
        fired: Fired::default(),
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
            cue,
            ..
        } => {
            let at = time(*at_ms);
            let check = reference.as_deref().map(|r| check_ref(refs, page, r, at));
            let link_to = match &check {
                Some(RefCheck::Valid(external_id)) => Some(external_id.as_str()),
                _ => None,
            };
            let link = batch.record_inbound(page, psid, at, link_to).await?;
            applied.reference = check.map(|check| match check {
                RefCheck::Valid(_) => link.as_str(),
                other => other.as_str(),
            });
            if let Some(event_key) = key
                && !triggers.is_empty()
            {
                // Recorded fires are keyed by the event: applying it again fires nothing new.
                let action = InboundAction {
                    page,
                    psid,
                    event_key,
                    reference: reference.as_deref(),
                    cue,
                };
                applied.fired = record_inbound(batch, triggers, &action, now_ms()).await?;
            }
            if link == Link::KeptImport {
                warn!(page_id = %page,
                    "A signed ref would link a PSID that an import ties to another user; the \
                     import stands. Re-import the user to move it.");
            }
            true
        }
        Event::Delivered {
            page,
            psid,
            watermark_ms,
            mids,
        } => {
            receipts.push(Receipt {
                page_id: page,
                psid,
                watermark: time(*watermark_ms),
                kind: ReceiptKind::Delivered { mids },
            });
            true
        }
        Event::Read {
            page,
            psid,
            watermark_ms,
        } => {
            receipts.push(Receipt {
                page_id: page,
                psid,
                watermark: time(*watermark_ms),
                kind: ReceiptKind::Read,
            });
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
        Event::Echo {
            page,
            mid,
            job: Some(job),
            at_ms,
        } => {
            batch
                .record_echo(job, page, mid.as_deref(), time(*at_ms))
                .await?
        }
        Event::Echo { job: None, .. } => false,
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

/// What a webhook `ref` is. Without keys nothing can be verified: a ref shaped like a signed
/// one is counted as a bad signature, any other as unsigned, and neither links.
fn check_ref(refs: Option<&RefKeys>, page: &str, reference: &str, at: OffsetDateTime) -> RefCheck {
    match refs {
        Some(keys) => keys.check(page, reference, at),
        None if herald_core::signed_ref::looks_signed(reference) => RefCheck::BadSignature,
        None => RefCheck::Unsigned,
    }
}
