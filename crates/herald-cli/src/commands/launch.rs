//! The launch check of `herald campaign send` on the terminal: `--dry-run` prints the page's
//! daily call budget, what the campaign will use, what is left after it and how long it takes
//! (and at a what-if `--rate`); a real send refuses a campaign over the budget it can see
//! (exit 65, nothing published) unless `--over-budget` is given. The check itself is
//! herald-producer's `LaunchCheck`, shared with the API.

use herald_core::campaign::Campaign;
use herald_core::duration::format_duration;
use herald_core::rates::PACING_SHARE;
use herald_producer::budget::CALLS_PER_ENGAGED_USER;
use herald_producer::{LaunchCheck, LaunchReport};
use herald_store::Store;

use crate::commands::text::{out, thousands};
use crate::config::Config;

/// The check for `campaign`: engaged users from `--engaged-users` when given, else the store's
/// count (a store that does not exist yet is not created).
pub(crate) async fn gather(config: &Config, campaign: &Campaign, flag: Option<u64>) -> LaunchCheck {
    let ceiling = config.page_rates().ceiling(campaign.page_id());
    if !Store::exists(&config.database_url) {
        let none = Err("there is no store yet (HERALD_DATABASE_URL)".to_owned());
        return LaunchCheck::gather(campaign, ceiling, flag, none).await;
    }
    match Store::connect(&config.database_url).await {
        Ok(store) => {
            let check = LaunchCheck::gather(campaign, ceiling, flag, Ok(&store)).await;
            store.close().await;
            check
        }
        Err(error) => {
            let why = Err(format!("the store cannot be read: {error}"));
            LaunchCheck::gather(campaign, ceiling, flag, why).await
        }
    }
}

/// Prints the check for a campaign of `calls` calls (one per job).
pub(crate) fn print(report: &LaunchReport) {
    let page = &report.page_id;
    match &report.budget {
        Some(budget) => {
            let whose = match budget.engaged_from {
                "given" => "--engaged-users",
                _ => "the store's count of people the page can message",
            };
            out(&format!(
                "daily budget: {} calls per 24 h for page {page} ({CALLS_PER_ENGAGED_USER} × {} \
                 engaged users, {whose})",
                thousands(budget.daily_calls),
                thousands(budget.engaged_users)
            ));
            match (budget.used_last_24h, &budget.used_unknown) {
                (Some(used), _) => out(&format!(
                    "used in the last 24 h: {} calls (Herald's own for this page, from its \
                     results; other apps' calls are not seen)",
                    thousands(used)
                )),
                (None, why) => out(&format!(
                    "used in the last 24 h: not counted ({})",
                    why.as_deref().unwrap_or("unknown")
                )),
            }
            out(&format!(
                "campaign calls: {} (one per job; retries come on top)",
                thousands(report.campaign_calls)
            ));
            match (budget.left_after, budget.over_by) {
                (Some(left), _) => out(&format!(
                    "left after it: {} ({:.1} % of the budget)",
                    thousands(left),
                    percent(left, budget.daily_calls)
                )),
                (None, over) => out(&format!(
                    "left after it: none, {} over",
                    thousands(over.unwrap_or(0))
                )),
            }
        }
        None => out(&format!(
            "daily budget: unknown ({}); pass --engaged-users N to check the campaign against \
             Graph's {CALLS_PER_ENGAGED_USER} calls per engaged user a day",
            report.budget_unknown.as_deref().unwrap_or("")
        )),
    }
    out(&format!(
        "send time: {} at {:.0}/s ({:.0} % of {}/s, the lower of the page's ceiling {}/s and \
         the campaign's rate_per_sec {})",
        secs(report.send_time_secs),
        report.paced_per_sec,
        PACING_SHARE * 100.0,
        report.rate_per_sec,
        report.page_ceiling,
        report.campaign_rate_per_sec
    ));
    if let Some(what_if) = &report.what_if {
        out(&format!(
            "send time at --rate {}: {} at {:.0}/s",
            what_if.asked_per_sec,
            secs(what_if.send_time_secs),
            what_if.paced_per_sec
        ));
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn secs(secs: u64) -> String {
    format_duration(std::time::Duration::from_secs(secs))
}
