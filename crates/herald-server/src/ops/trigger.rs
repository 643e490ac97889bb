//! API-triggered sends, in the shape of Braze's `/campaigns/trigger/send`: `POST
//! /campaigns/{id}/trigger` with `{"recipients": [{"external_user_id": "u1",
//! "trigger_properties": {...}}]}` (1 to `MAX_RECIPIENTS`). The stored campaign's latest
//! version is sent to each recipient as their stored profile on the campaign's page sees them,
//! with the trigger's properties as the attribute `trigger` (Liquid: `{{ trigger.order_id }}`);
//! the campaign's segment is not read. Each recipient gets one job (in the priority lane) or one
//! `skipped` result with its reason: no PSID for the page (`blank_psid`, also for an id the
//! store does not know), outside the window, opted out, capped. The run is published before the
//! answer, whose `dispatch_id` is the run's id: `dispatch` shows each recipient's outcome, and
//! `campaign status` the run. With an `Idempotency-Key`, the same request again answers the
//! same dispatch and publishes nothing, unless that dispatch stopped before its end (the broker
//! failed it, or its serve died): then it continues after its last confirmed recipient, so a
//! client retrying a 503 with its key reaches each recipient once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use herald_core::campaign::Priority;
use herald_core::clock::{millis, now_ms};
use herald_core::rates::PageRates;
use herald_core::{Campaign, User, validate_id};
use herald_producer::{LaunchCheck, Progress, Run, SegmentInput, SendSpec, SharedLink};
use herald_store::{RunProgress, RunRecord, RunState, Store};
use serde::Serialize;
use serde_json::Value;
use tracing::{error, warn};

use crate::ops::campaigns;
use crate::ops::start_key::StartKey;
use crate::ops::{Broker, ErrorKind, OpsError, Problem};

/// Recipients in one call (Braze allows 50).
pub const MAX_RECIPIENTS: usize = 50;
/// The attribute trigger properties are given to Liquid as.
pub const TRIGGER_ATTRIBUTE: &str = "trigger";
/// How long a request waits for its key's dispatch, still publishing in another request, to
/// end before it answers 409.
const BUSY_WAIT: Duration = Duration::from_secs(10);
/// A dispatch whose run has not moved for this long lost its request (its serve died): a
/// retry with its key continues it.
const SILENT_AFTER: Duration = Duration::from_secs(120);

/// What a trigger call did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatch {
    /// The run's id: `GET /campaigns/dispatches/{dispatch_id}`, `campaign status`.
    pub dispatch_id: String,
    pub campaign_id: String,
    /// The stored campaign's version that was sent.
    pub version: i64,
    /// Recipients with a job.
    pub published: u64,
    /// Recipients with a `skipped` result, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// The Idempotency-Key had dispatched this already (answered 200): `published` and
    /// `skipped` count what this call added, nothing unless it finished a dispatch that had
    /// stopped.
    #[serde(skip)]
    pub existing: bool,
}

/// A dispatch's recipients and where each stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DispatchStatus {
    pub dispatch_id: String,
    pub campaign_id: String,
    /// One per recipient whose result the store has; the rest are still on their way.
    pub recipients: Vec<RecipientOutcome>,
}

/// One recipient's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientOutcome {
    pub external_user_id: String,
    /// `sent`, `failed`, `dead`, `expired`, `skipped` or `cancelled`.
    pub status: String,
    /// Why, for a skip or a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Graph's message id, when sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// Where a trigger publishes and what it checks.
pub struct Trigger<'a> {
    pub store: &'a Store,
    pub broker: &'a Broker,
    pub rates: &'a PageRates,
    /// The serve's connection for triggers: each call is a small run, and opening a connection
    /// and declaring the topology per call cost more than its 50 jobs.
    pub link: &'a Arc<SharedLink>,
}

/// Sends the stored campaign `campaign_id` to the recipients of `body` (its raw bytes are what
/// an `idempotency_key` is bound to).
pub async fn trigger(
    at: &Trigger<'_>,
    campaign_id: &str,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> Result<Dispatch, OpsError> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|error| OpsError::invalid(ErrorKind::Usage, "", format!("not JSON: {error}")))?;
    let recipients = recipients(&request)?;
    let (version, campaign) = campaigns::live(at.store, campaign_id).await?;
    let key = match idempotency_key {
        None => None,
        Some(key) => Some(StartKey::new(campaign_id, key, &[body])?),
    };
    let answer = |dispatch_id: String, added: RunProgress, existing: bool| Dispatch {
        dispatch_id,
        campaign_id: campaign_id.to_owned(),
        version,
        published: added.published,
        skipped: added.skipped,
        existing,
    };
    if let Some(key) = &key
        && let Some(run_id) = key.claim(at.store).await?
    {
        let added = again(at, &run_id, &recipients).await?;
        return Ok(answer(run_id, added, true));
    }
    let campaign = campaign.with_priority(Priority::High);
    let run = match prepare(at, campaign, &recipients, None).await {
        Ok(run) => run,
        Err(error) => {
            if let Some(key) = &key {
                key.release(at.store).await;
            }
            return Err(error);
        }
    };
    let run_id = run.run_id().to_owned();
    // Bound before anything is published: a retry with the key finds this dispatch, to answer
    // or to finish, never a second one.
    if let Some(key) = &key
        && let Err(error) = key.bind(at.store, &run_id).await
    {
        key.release(at.store).await;
        return Err(error);
    }
    let record = execute(run, &run_id).await?;
    Ok(answer(run_id, record, false))
}

/// The key's dispatch `run_id` again: nothing when it is complete (or cancelled); continued
/// after its last confirmed recipient when it stopped or went silent (`SILENT_AFTER`); waited
/// for (up to `BUSY_WAIT`) while another request is publishing it. What this call added.
async fn again(
    at: &Trigger<'_>,
    run_id: &str,
    recipients: &[(String, Option<String>)],
) -> Result<RunProgress, OpsError> {
    let waited = tokio::time::Instant::now();
    loop {
        let record = at
            .store
            .load_run(run_id)
            .await?
            .ok_or_else(|| OpsError::UnknownRun {
                run_id: run_id.to_owned(),
            })?;
        if record.progress.complete || record.state == RunState::Cancelled {
            return Ok(RunProgress::default());
        }
        let silent_since = now_ms().saturating_sub(millis(SILENT_AFTER));
        if at.store.take_stopped_run(run_id, silent_since).await? {
            return resume(at, record, recipients).await;
        }
        if waited.elapsed() >= BUSY_WAIT {
            return Err(OpsError::Conflict(format!(
                "dispatch {run_id}, started with this idempotency key, is still publishing; \
                 retry in a moment"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Continues `record`'s dispatch after its last confirmed recipient, with the campaign as it
/// was sent; what it added.
async fn resume(
    at: &Trigger<'_>,
    record: RunRecord,
    recipients: &[(String, Option<String>)],
) -> Result<RunProgress, OpsError> {
    let run_id = record.run_id.as_str();
    let campaign = Campaign::from_json(&record.document).map_err(|errors| {
        OpsError::Internal(format!(
            "dispatch {run_id}'s campaign cannot be read: {errors}"
        ))
    })?;
    let run = match prepare(at, campaign, recipients, Some(run_id)).await {
        Ok(run) => run,
        Err(failure) => {
            record_stop(at.store, run_id, &failure.to_string()).await;
            return Err(failure);
        }
    };
    let after = execute(run, run_id).await?;
    let before = record.progress;
    let skipped = after
        .skipped
        .into_iter()
        .map(|(reason, n)| {
            let earlier = before.skipped.get(&reason).copied().unwrap_or(0);
            (reason, n.saturating_sub(earlier))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    Ok(RunProgress {
        published: after.published.saturating_sub(before.published),
        skipped,
        ..after
    })
}

/// Publishes `run` and waits for its confirms; when it fails, the run says why (the producer
/// records it), so a retry with its key continues it.
async fn execute(run: Run, run_id: &str) -> Result<RunProgress, OpsError> {
    run.execute(Arc::new(Progress::default()))
        .await
        .map_err(|failure| {
            error!(dispatch_id = %run_id, error = %failure,
                "A trigger dispatch stopped; confirmed recipients are recorded, and the same \
                 call with its Idempotency-Key continues it.");
            producer(failure)
        })
}

/// Records on the dispatch's run why it stopped before the producer ran (a resume that could
/// not start), so the next retry with its key can take it over again.
async fn record_stop(store: &Store, run_id: &str, reason: &str) {
    if let Err(error) = store.record_producer_stop(run_id, reason).await {
        warn!(dispatch_id = %run_id, error = %error,
            "Could not record why a trigger dispatch stopped; a retry with its key continues \
             it two minutes after it stopped.");
    }
}

/// Each recipient's outcome so far.
pub async fn status(store: &Store, dispatch_id: &str) -> Result<DispatchStatus, OpsError> {
    let run = store
        .load_run(dispatch_id)
        .await?
        .ok_or_else(|| OpsError::UnknownRun {
            run_id: dispatch_id.to_owned(),
        })?;
    let limit = i64::try_from(MAX_RECIPIENTS).unwrap_or(i64::MAX);
    let recipients = store
        .run_outcomes(dispatch_id, limit)
        .await?
        .into_iter()
        .map(|outcome| RecipientOutcome {
            external_user_id: outcome.external_id,
            reason: outcome.message.filter(|_| outcome.status != "sent"),
            status: outcome.status,
            message_id: outcome.message_id,
        })
        .collect();
    Ok(DispatchStatus {
        dispatch_id: dispatch_id.to_owned(),
        campaign_id: run.campaign_id,
        recipients,
    })
}

/// The run sending `campaign` to the recipients, new or `resume`d.
async fn prepare(
    at: &Trigger<'_>,
    campaign: Campaign,
    recipients: &[(String, Option<String>)],
    resume: Option<&str>,
) -> Result<Run, OpsError> {
    let ids: Vec<&str> = recipients.iter().map(|(id, _)| id.as_str()).collect();
    let known: BTreeMap<String, User> = at
        .store
        .users_on_page(campaign.page_id(), &ids)
        .await?
        .into_iter()
        .map(|user| (user.external_id.clone(), user))
        .collect();
    let users: Vec<User> = recipients
        .iter()
        .map(|(id, properties)| {
            // Unknown to the store: no PSID, so a `blank_psid` skip.
            let mut user = known
                .get(id)
                .cloned()
                .unwrap_or_else(|| User::new(id.clone(), ""));
            if let Some(properties) = properties {
                user.attributes
                    .insert(TRIGGER_ATTRIBUTE.to_owned(), properties.clone());
            }
            user
        })
        .collect();
    let segment = SegmentInput::Users(users);
    let ceiling = at.rates.ceiling(campaign.page_id());
    let check = LaunchCheck::gather(&campaign, ceiling, None, Ok(at.store)).await;
    if let Some(refusal) = check
        .over_budget(&campaign, &segment, at.store, false)
        .await
    {
        return Err(OpsError::invalid(ErrorKind::Data, "recipients", refusal));
    }
    let spec = SendSpec {
        campaign: Arc::new(campaign),
        segment,
        resume: resume.map(str::to_owned),
        strict: false,
        amqp: at.broker.amqp.clone(),
        topology: at.broker.topology.clone(),
        store: at.store.clone(),
        shared_link: Some(at.link.clone()),
    };
    Run::prepare(spec).await.map_err(producer)
}

/// The recipients: (external id, trigger properties as compact JSON), or every problem.
fn recipients(request: &Value) -> Result<Vec<(String, Option<String>)>, OpsError> {
    let wrong = |path: &str, message: &str| OpsError::invalid(ErrorKind::Usage, path, message);
    let Value::Object(fields) = request else {
        return Err(wrong(
            "",
            "the body must be a JSON object with `recipients`",
        ));
    };
    if let Some(key) = fields.keys().find(|key| key.as_str() != "recipients") {
        return Err(wrong(key, "unknown field (expected `recipients`)"));
    }
    let Some(Value::Array(items)) = fields.get("recipients") else {
        return Err(wrong("recipients", "is required: an array of recipients"));
    };
    if items.is_empty() || items.len() > MAX_RECIPIENTS {
        return Err(wrong(
            "recipients",
            &format!(
                "1 to {MAX_RECIPIENTS} recipients per call, got {}",
                items.len()
            ),
        ));
    }
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let at = |field: &str| format!("recipients[{index}]{field}");
        let Value::Object(recipient) = item else {
            problems.push(Problem::at(at(""), "must be a JSON object"));
            continue;
        };
        if let Some(key) = recipient
            .keys()
            .find(|key| !matches!(key.as_str(), "external_user_id" | "trigger_properties"))
        {
            let message = "unknown field (Herald reads external_user_id and trigger_properties)";
            problems.push(Problem::at(at(&format!(".{key}")), message));
            continue;
        }
        let id = match recipient.get("external_user_id") {
            Some(Value::String(id)) if validate_id(id.trim()).is_ok() => id.trim().to_owned(),
            Some(Value::String(_)) => {
                let message = "must be 1 to 256 bytes without control characters";
                problems.push(Problem::at(at(".external_user_id"), message));
                continue;
            }
            _ => {
                problems.push(Problem::at(
                    at(".external_user_id"),
                    "is required: a string",
                ));
                continue;
            }
        };
        if !seen.insert(id.clone()) {
            let message = "appears twice in this call: one message per recipient";
            problems.push(Problem::at(at(".external_user_id"), message));
            continue;
        }
        let properties = match recipient.get("trigger_properties") {
            None | Some(Value::Null) => None,
            Some(value @ Value::Object(_)) => Some(value.to_string()),
            Some(_) => {
                problems.push(Problem::at(at(".trigger_properties"), "must be an object"));
                continue;
            }
        };
        out.push((id, properties));
    }
    if problems.is_empty() {
        return Ok(out);
    }
    Err(OpsError::Invalid {
        message: format!(
            "{} recipient problem(s); nothing was published",
            problems.len()
        ),
        problems,
        kind: ErrorKind::Usage,
    })
}

fn producer(error: herald_producer::ProducerError) -> OpsError {
    match error {
        herald_producer::ProducerError::Store(error) => error.into(),
        herald_producer::ProducerError::Amqp(error) => OpsError::Broker(error),
        other => OpsError::Internal(other.to_string()),
    }
}
