//! `trigger_days`: how a campaign with a `[trigger]` did, day by day (UTC): events that fired
//! it, jobs published, fires left out by the filters or skipped (by reason: `once_per`, and the
//! producer's reasons), fires still pending, and the results of that day's run
//! (`<campaign_id>@<yyyy-mm-dd>`). `herald campaign status CAMPAIGN_ID` and `GET
//! /campaigns/{id}/days` show it.

use std::collections::BTreeMap;

use herald_core::clock::now_ms;
use herald_store::Store;
use serde::Serialize;

use crate::fires::day_run_id;
use crate::ops::campaigns;
use crate::ops::{ErrorKind, OpsError};

/// Days shown, counting today.
pub const DAYS_SHOWN: i64 = 30;
const DAY_MS: i64 = 86_400_000;

/// A triggered campaign's days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerReport {
    pub campaign_id: String,
    /// What it waits for: `event`, `postback`, `quick_reply`, `ref` or `keyword`.
    pub trigger_kind: &'static str,
    /// The event name, payload, ref or keyword.
    pub trigger_key: String,
    /// Days with at least one fire, oldest first (the last `DAYS_SHOWN` days).
    pub days: Vec<TriggerDay>,
}

/// One UTC day of a triggered campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerDay {
    /// `yyyy-mm-dd`.
    pub day: String,
    /// The day's run (`campaign status RUN_ID`, pause, cancel).
    pub run_id: String,
    /// Events that fired the campaign (an event delivered twice counts once).
    pub fired: u64,
    /// Jobs published.
    pub published: u64,
    /// Fires the segment's filters left out.
    pub filtered: u64,
    /// Fires that sent nothing, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Fires not yet published.
    pub pending: u64,
    /// Results of the day's run, by status.
    pub results: BTreeMap<String, u64>,
    /// Sent messages a delivery receipt covers.
    pub delivered: u64,
    /// Sent messages a read receipt covers.
    pub read: u64,
}

/// The days of the stored campaign `campaign_id`; `Invalid` when it has no `[trigger]`.
pub async fn trigger_days(store: &Store, campaign_id: &str) -> Result<TriggerReport, OpsError> {
    let (_, campaign) = campaigns::latest(store, campaign_id).await?;
    let Some(trigger) = campaign.trigger() else {
        let message = format!(
            "campaign {campaign_id} has no [trigger]: it is sent by runs; give a run id instead"
        );
        return Err(OpsError::invalid(ErrorKind::Usage, "campaign_id", message));
    };
    let today = now_ms().div_euclid(DAY_MS) * DAY_MS;
    let since = today - (DAYS_SHOWN - 1) * DAY_MS;
    let mut days = Vec::new();
    for (day_ms, fires) in store.fire_days(campaign_id, since).await? {
        let run_id = day_run_id(campaign_id, day_ms);
        let results = store.run_status(&run_id).await?;
        let day = run_id
            .rsplit_once('@')
            .map_or_else(String::new, |(_, day)| day.to_owned());
        let counts = results.counts;
        let by_status: BTreeMap<String, u64> = [
            ("sent", counts.sent),
            ("failed", counts.failed),
            ("dead", counts.dead),
            ("expired", counts.expired),
            ("skipped", counts.skipped),
            ("cancelled", counts.cancelled),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(status, n)| (status.to_owned(), n))
        .collect();
        days.push(TriggerDay {
            day,
            run_id,
            fired: fires.fired,
            published: fires.published,
            filtered: fires.filtered,
            skipped: fires.skipped,
            pending: fires.pending,
            results: by_status,
            delivered: results.delivered,
            read: results.read,
        });
    }
    Ok(TriggerReport {
        campaign_id: campaign_id.to_owned(),
        trigger_kind: trigger.kind.as_str(),
        trigger_key: trigger.key.clone(),
        days,
    })
}

/// The report as the CLI's table.
pub fn render(report: &TriggerReport) -> String {
    let mut out = format!(
        "campaign: {}\ntrigger: {} {:?}\n",
        report.campaign_id, report.trigger_kind, report.trigger_key
    );
    if report.days.is_empty() {
        out.push_str(&format!("no fires in the last {DAYS_SHOWN} days\n"));
        return out;
    }
    out.push_str("day         fired  published  filtered  pending  skipped  results\n");
    for day in &report.days {
        let list = |counts: &BTreeMap<String, u64>| {
            let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
            if parts.is_empty() {
                "-".to_owned()
            } else {
                parts.join(",")
            }
        };
        out.push_str(&format!(
            "{:<10}  {:>5}  {:>9}  {:>8}  {:>7}  {}  {}\n",
            day.day,
            day.fired,
            day.published,
            day.filtered,
            day.pending,
            list(&day.skipped),
            list(&day.results),
        ));
    }
    out
}
