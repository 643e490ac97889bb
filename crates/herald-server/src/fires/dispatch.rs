//! The dispatcher: every `herald serve` runs one. Woken by its own ingest and `/users/track`
//! (and every `POLL_EVERY` for fires recorded by other processes or come due), it claims due
//! fires for `LEASE`, plans each one, publishes the jobs and skipped results with publisher confirms
//! and only then settles the fires. A serve that dies holding a claim leaves the fires pending;
//! another claims them when the lease lapses, and marks their jobs `x-herald-verify-since`
//! so a worker checks the send ledger before sending one that may be out already.
//!
//! A campaign's `delay` is waited out in the store: a fire is claimed once due, so everything
//! below reads the world as it is when the message goes out (a cart bought during the delay is
//! filtered out, a campaign deleted during it sends nothing).
//!
//! Planning one fire: the campaign version the fire names, unless the campaign was deleted
//! since (`campaign_deleted`); the person (by external id for an event, by PSID for a webhook
//! action; unknown means no PSID, a `blank_psid` skip); the event's properties as the attribute
//! `trigger`; the segment's filters on the profile now (a miss settles the fire `filtered`, no
//! result); the producer's `Planner` (window, opt-out, render, Meta's limits, the campaign's
//! frequency cap counted for this person, what is left of the `delay` for a fire recorded
//! before its campaign's delay was known to the store);
//! then `once_per`, each check taken in one statement with the job id recorded on the fire
//! (`Store::prepare_fires`, the batch's in one transaction) before publishing, so two serves
//! never both send and the job's result finds its fire (the latency metric).
//! Jobs are published on the serve's shared broker connection (the API triggers' too).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use herald_amqp::{AmqpError, Headers, PRIORITY_ROUTING_KEY, PendingConfirm};
use herald_core::campaign::{Campaign, Trigger};
use herald_core::clock::{millis, now_ms};
use herald_core::duration::format_duration;
use herald_core::{SendJob, User};
use herald_producer::plan::{CapCounts, Planned, Planner};
use herald_producer::{Connected, SharedLink};
use herald_store::{ClaimedFire, NewRun, OncePer, PreparedFire, SettledFire, Store, StoreError};
use herald_telemetry::Metrics;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::ops::Broker;
use crate::ops::trigger::TRIGGER_ATTRIBUTE;

/// How long a claim on fires holds before another serve may take them.
const LEASE: Duration = Duration::from_secs(30);
/// Fires claimed at a time.
const BATCH: i64 = 500;
/// How often fires recorded by other processes are looked for.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Settled fires are kept this long (the days report shows 30), then pruned...
const FIRES_KEPT: Duration = Duration::from_secs(35 * 86_400);
/// ...every this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Campaign versions kept parsed.
const CAMPAIGNS_KEPT: usize = 256;

/// What the dispatcher needs.
#[derive(Clone)]
pub(crate) struct DispatchSettings {
    pub(crate) store: Store,
    pub(crate) broker: Broker,
    pub(crate) metrics: Metrics,
    /// Notified when this process recorded fires.
    pub(crate) wake: Arc<Notify>,
    /// The serve's broker connection.
    pub(crate) link: Arc<SharedLink>,
}

/// Dispatches fires until `stop`.
pub(crate) async fn run_dispatcher(settings: DispatchSettings, stop: CancellationToken) {
    let mut dispatcher = Dispatcher {
        settings,
        failed: None,
        campaigns: HashMap::new(),
        runs: HashSet::new(),
    };
    let mut pruned_at: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = dispatcher.settings.wake.notified() => {}
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
        loop {
            match dispatcher.round().await {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    warn!(error = %error, "Could not dispatch triggered campaigns; the fires \
                        stay pending and are tried again.");
                    break;
                }
            }
        }
        dispatcher.gauge().await;
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(std::time::Instant::now());
            dispatcher.prune().await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Amqp(#[from] AmqpError),
}

struct Dispatcher {
    settings: DispatchSettings,
    /// The connection a publish last failed on: opened again, not reused.
    failed: Option<Arc<Connected>>,
    /// (campaign id, version) → the campaign, `None` when the version cannot be read.
    campaigns: HashMap<(String, i64), Option<Arc<Campaign>>>,
    /// Day runs known to have a record.
    runs: HashSet<String>,
}

/// What one fire comes to.
enum Outcome {
    /// Publish this job.
    Job(SendJob),
    /// Publish this skipped result.
    Skip(herald_core::DeliveryResult, &'static str),
    /// Nothing to publish: filtered out, or a reason without a result.
    Settle(&'static str, Option<&'static str>),
}

impl Dispatcher {
    /// Claims, plans, publishes and settles one batch of fires; how many there were.
    async fn round(&mut self) -> Result<usize, DispatchError> {
        let store = self.settings.store.clone();
        let lease = millis(LEASE);
        let claimed = store.claim_fires(lease, BATCH).await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let now = OffsetDateTime::now_utc();
        let known = self.users(&claimed).await?;
        let mut campaigns: Vec<&str> = claimed
            .iter()
            .map(|claimed| claimed.fire.campaign_id.as_str())
            .collect();
        campaigns.sort_unstable();
        campaigns.dedup();
        let deleted: HashSet<String> = store
            .deleted_campaigns(&campaigns)
            .await?
            .into_iter()
            .collect();
        let mut planned = Vec::with_capacity(claimed.len());
        let mut prepared = Vec::new();
        for (index, fire) in claimed.iter().enumerate() {
            if deleted.contains(&fire.fire.campaign_id) {
                planned.push(Outcome::Settle("skipped", Some("campaign_deleted")));
                continue;
            }
            let (outcome, prepare) = self.plan(fire, &known, now).await?;
            if let Some(prepare) = prepare {
                prepared.push((index, prepare));
            }
            planned.push(outcome);
        }
        // The uncapped jobs' `once_per` checks and job ids, in one transaction.
        let (indexes, prepared): (Vec<usize>, Vec<PreparedFire>) = prepared.into_iter().unzip();
        let granted = store.prepare_fires(&prepared).await?;
        for (index, granted) in indexes.into_iter().zip(granted) {
            if !granted {
                planned[index] = Outcome::Settle("skipped", Some("once_per"));
            }
        }
        self.publish(&claimed, &planned).await?;
        let settled: Vec<SettledFire> = claimed
            .iter()
            .zip(&planned)
            .map(|(claimed, outcome)| settled(claimed, outcome))
            .collect();
        store.settle_fires(&settled).await?;
        let metrics = &self.settings.metrics;
        let done_ms = now_ms();
        for (claimed, outcome) in claimed.iter().zip(&planned) {
            match outcome {
                Outcome::Job(_) => {
                    metrics.trigger_enqueued.inc();
                    let waited = done_ms.saturating_sub(claimed.fire.due_at_ms);
                    metrics
                        .trigger_latency
                        .with_label_values(&["enqueued"])
                        .observe(waited as f64 / 1000.0);
                }
                Outcome::Skip(_, reason) | Outcome::Settle(_, Some(reason)) => {
                    metrics.trigger_skipped.with_label_values(&[reason]).inc();
                }
                Outcome::Settle(_, None) => {
                    metrics
                        .trigger_skipped
                        .with_label_values(&["filtered"])
                        .inc();
                }
            }
        }
        debug!(fires = claimed.len(), "Triggered campaigns dispatched.");
        Ok(claimed.len())
    }

    /// The people the fires with an external id are for, read together, by (page, id).
    async fn users(
        &self,
        claimed: &[ClaimedFire],
    ) -> Result<HashMap<(String, String), User>, DispatchError> {
        let mut by_page: HashMap<&str, Vec<&str>> = HashMap::new();
        for fire in claimed {
            if let Some(id) = &fire.fire.external_id {
                by_page.entry(&fire.fire.page_id).or_default().push(id);
            }
        }
        let mut known = HashMap::new();
        for (page, mut ids) in by_page {
            ids.sort_unstable();
            ids.dedup();
            for user in self.settings.store.users_on_page(page, &ids).await? {
                known.insert((page.to_owned(), user.external_id.clone()), user);
            }
        }
        Ok(known)
    }

    /// One fire's outcome; a job of an uncapped campaign comes with what to record before it
    /// is published (its `once_per` check and job id; the caller does the batch's together).
    async fn plan(
        &mut self,
        claimed: &ClaimedFire,
        known: &HashMap<(String, String), User>,
        now: OffsetDateTime,
    ) -> Result<(Outcome, Option<PreparedFire>), DispatchError> {
        let outcome = |outcome| Ok((outcome, None));
        let fire = &claimed.fire;
        let Some(campaign) = self.campaign(&fire.campaign_id, fire.version).await? else {
            return outcome(Outcome::Settle("skipped", Some("campaign_unreadable")));
        };
        let Some(trigger) = campaign.trigger() else {
            return outcome(Outcome::Settle("skipped", Some("campaign_unreadable")));
        };
        let run_id = super::day_run_id(&fire.campaign_id, fire.received_at_ms);
        self.ensure_run(&run_id, &campaign, trigger, fire.received_at_ms)
            .await?;
        let store = &self.settings.store;
        let found = match (&fire.external_id, &fire.psid) {
            // Cloned, not taken: one person may fire several campaigns in a batch.
            (Some(id), _) => known.get(&(fire.page_id.clone(), id.clone())).cloned(),
            (None, Some(psid)) => store.user_by_psid(&fire.page_id, psid).await?,
            (None, None) => None,
        };
        let mut user = found.unwrap_or_else(|| {
            // Unknown to the store: no PSID, so the planner skips it as `blank_psid`.
            let id = fire
                .external_id
                .clone()
                .unwrap_or_else(|| "unknown".to_owned());
            User::new(id, "")
        });
        if let Some(properties) = &fire.properties {
            user.attributes
                .insert(TRIGGER_ATTRIBUTE.to_owned(), properties.clone());
        }
        if !campaign.matches(&user, now) {
            return outcome(Outcome::Settle("filtered", None));
        }
        let caps = self.caps(&campaign, &user).await?;
        // Nothing left once due; a fire recorded before the store knew its campaign's delay
        // (put before the delay moved to the store) waits the rest in the broker.
        let due_ms = fire.received_at_ms.saturating_add(millis(trigger.delay));
        let left = Duration::from_millis(u64::try_from(due_ms - now_ms()).unwrap_or(0));
        let mut planner =
            Planner::for_fire(&campaign, run_id, fire_key(&fire.event_key), left).with_caps(caps);
        let capped = planner.capped();
        match planner.plan(&user, now) {
            None => outcome(Outcome::Settle("filtered", None)),
            Some(Planned::Skip { result, reason }) => outcome(Outcome::Skip(result, reason)),
            Some(Planned::Job(job)) => {
                let prepare = PreparedFire {
                    campaign_id: fire.campaign_id.clone(),
                    event_key: fire.event_key.clone(),
                    job_id: job.job_id.clone(),
                    // `once_per = "0s"`: every event sends, nothing to check.
                    once_per: match trigger.once_per {
                        Some(period) if period.is_zero() => None,
                        period => Some(OncePer {
                            user_key: user.external_id.clone(),
                            since_ms: period.map(|p| now_ms().saturating_sub(millis(p))),
                        }),
                    },
                };
                if !capped {
                    return Ok((Outcome::Job(job), Some(prepare)));
                }
                // A capped send checks and reserves at once, so the next fire of this batch
                // for the same person counts it.
                if store.prepare_fires(&[prepare]).await?.first() != Some(&true) {
                    return outcome(Outcome::Settle("skipped", Some("once_per")));
                }
                let (job_id, run_id) = (&job.job_id, &job.run_id);
                store
                    .reserve_cap_job(job_id, run_id, &fire.page_id, &user.external_id, now_ms())
                    .await?;
                outcome(Outcome::Job(job))
            }
        }
    }

    /// What `user` already received from the page in the campaign's frequency-cap period,
    /// when the campaign has a cap. Counted for this one person without the page claim a
    /// capped run takes: two capped sends to one person at the same moment may both pass.
    async fn caps(
        &self,
        campaign: &Campaign,
        user: &User,
    ) -> Result<Option<CapCounts>, DispatchError> {
        let (Some(cap), Some(psid)) = (campaign.delivery().frequency_cap, &user.messenger_id)
        else {
            return Ok(None);
        };
        let since = now_ms().saturating_sub(millis(cap.per));
        let received = self
            .settings
            .store
            .user_cap_count(campaign.page_id(), psid, &user.external_id, since)
            .await?;
        Ok(Some(CapCounts {
            max: cap.max,
            per: format_duration(cap.per),
            counts: [(user.external_id.clone(), received)].into(),
        }))
    }

    /// Publishes every job and result of the batch and waits for the broker's confirms.
    async fn publish(
        &mut self,
        claimed: &[ClaimedFire],
        planned: &[Outcome],
    ) -> Result<(), DispatchError> {
        if !planned
            .iter()
            .any(|outcome| matches!(outcome, Outcome::Job(_) | Outcome::Skip(..)))
        {
            return Ok(());
        }
        let broker = &self.settings.broker;
        let stale = self.failed.take();
        let link = self
            .settings
            .link
            .get(&broker.amqp, &broker.topology, stale.as_ref())
            .await?;
        let published = publish_all(&link, broker, claimed, planned).await;
        if published.is_err() {
            self.failed = Some(link);
        }
        published
    }

    /// The campaign version `version` of `campaign_id`, parsed once.
    async fn campaign(
        &mut self,
        campaign_id: &str,
        version: i64,
    ) -> Result<Option<Arc<Campaign>>, DispatchError> {
        let key = (campaign_id.to_owned(), version);
        if let Some(known) = self.campaigns.get(&key) {
            return Ok(known.clone());
        }
        let stored = self
            .settings
            .store
            .stored_campaign(campaign_id, Some(version))
            .await?;
        let parsed = stored.and_then(|stored| {
            let parsed = if stored.format == "json" {
                Campaign::from_json(&stored.document)
            } else {
                Campaign::from_toml(&stored.document)
            };
            parsed
                .map_err(|errors| {
                    warn!(
                        campaign_id,
                        version,
                        problems = errors.problems().len(),
                        "A stored campaign version no longer reads; its fires are skipped. \
                         Put the campaign again."
                    );
                })
                .ok()
                .map(Arc::new)
        });
        if self.campaigns.len() >= CAMPAIGNS_KEPT {
            self.campaigns.clear();
        }
        self.campaigns.insert(key, parsed.clone());
        Ok(parsed)
    }

    /// Makes sure the day's run has a record, so `campaign status` and results find it.
    async fn ensure_run(
        &mut self,
        run_id: &str,
        campaign: &Campaign,
        trigger: &Trigger,
        received_at_ms: i64,
    ) -> Result<(), DispatchError> {
        if self.runs.contains(run_id) {
            return Ok(());
        }
        let day_start = received_at_ms - received_at_ms.rem_euclid(86_400_000);
        let run = NewRun {
            run_id: run_id.to_owned(),
            campaign_id: campaign.id().to_owned(),
            document: campaign.to_json().to_string(),
            segment: format!("trigger: {} {:?}", trigger.kind.as_str(), trigger.key),
            started_at: OffsetDateTime::from_unix_timestamp(day_start / 1000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        };
        match self.settings.store.create_run(&run).await {
            Ok(()) | Err(StoreError::RunExists { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        if self.runs.len() >= CAMPAIGNS_KEPT {
            self.runs.clear();
        }
        self.runs.insert(run_id.to_owned());
        Ok(())
    }

    /// Forgets settled fires older than `FIRES_KEPT` (every serve does; deleting twice is
    /// harmless).
    async fn prune(&self) {
        let before = now_ms().saturating_sub(millis(FIRES_KEPT));
        match self.settings.store.prune_fires(before).await {
            Ok(0) => {}
            Ok(pruned) => debug!(pruned, "Old settled fires pruned."),
            Err(error) => warn!(error = %error, "Could not prune old settled fires."),
        }
    }

    /// Keeps the pending-fires gauges current.
    async fn gauge(&self) {
        match self.settings.store.pending_fires().await {
            Ok(pending) => {
                let metrics = &self.settings.metrics;
                let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                metrics.trigger_pending.set(gauge(pending.due));
                metrics.trigger_waiting.set(gauge(pending.waiting));
                let age = pending
                    .due_since_ms
                    .map_or(0, |since| now_ms().saturating_sub(since) / 1000);
                metrics.trigger_oldest_pending.set(age.max(0));
            }
            Err(error) => debug!(error = %error, "Could not count pending fires."),
        }
    }
}

/// Publishes every job and skipped result of a batch on `link` and waits for their confirms.
async fn publish_all(
    link: &Connected,
    broker: &Broker,
    claimed: &[ClaimedFire],
    planned: &[Outcome],
) -> Result<(), DispatchError> {
    let (jobs, results) = (
        broker.topology.jobs_exchange(),
        broker.topology.results_exchange(),
    );
    let mut pending: Vec<PendingConfirm> = Vec::new();
    for (claimed, outcome) in claimed.iter().zip(planned) {
        let confirm = match outcome {
            Outcome::Job(job) => {
                let body = serde_json::to_vec(job).expect("a job serialises");
                // Triggered jobs answer a person: the priority lane.
                let mut headers = Headers::new().with_high_priority();
                if claimed.claims > 1 {
                    // An earlier claim may have published it before its holder died.
                    headers = headers.with_verify_since(claimed.first_claimed_at_ms);
                }
                link.publisher()
                    .publish(&jobs, PRIORITY_ROUTING_KEY, &body, headers)
                    .await?
            }
            Outcome::Skip(result, _) => {
                let body = serde_json::to_vec(result).expect("a result serialises");
                link.publisher()
                    .publish(&results, &result.routing_key(), &body, Headers::new())
                    .await?
            }
            Outcome::Settle(..) => continue,
        };
        pending.push(confirm);
    }
    for confirm in pending {
        confirm.await?;
    }
    Ok(())
}

/// How a fire is recorded once its outcome is confirmed.
fn settled(claimed: &ClaimedFire, outcome: &Outcome) -> SettledFire {
    let fire = &claimed.fire;
    let (state, reason, run_id, job_id) = match outcome {
        Outcome::Job(job) => (
            "published",
            None,
            Some(job.run_id.clone()),
            Some(job.job_id.clone()),
        ),
        Outcome::Skip(result, reason) => (
            "skipped",
            Some((*reason).to_owned()),
            Some(result.run_id.clone()),
            Some(result.job_id.clone()),
        ),
        Outcome::Settle(state, reason) => (*state, reason.map(str::to_owned), None, None),
    };
    SettledFire {
        campaign_id: fire.campaign_id.clone(),
        event_key: fire.event_key.clone(),
        state,
        reason,
        run_id,
        job_id,
    }
}

/// The short name of an event in its job id: 12 hex digits of a digest of its key.
fn fire_key(event_key: &str) -> String {
    hex::encode(&Sha256::digest(event_key.as_bytes())[..6])
}
