//! The launch check of `herald campaign send`: the page's daily call budget on Graph (200 calls
//! × the people it can message, from `--engaged-users` or the store's count), what the
//! campaign will use, what is left after it, and how long it takes at the page's rate (and at a
//! what-if `--rate`). `--dry-run` prints it; a real send refuses a campaign over the budget it
//! can see (exit 65, nothing published) unless `--over-budget` is given.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use herald_core::Secret;
use herald_core::campaign::Campaign;
use herald_core::duration::format_duration;
use herald_producer::budget::{self, Budget, CALLS_PER_ENGAGED_USER, EngagedFrom};
use herald_producer::{SegmentInput, dry_run, dry_run_store};
use herald_store::Store;
use herald_worker::PACING_SHARE;

use crate::commands::text::out;
use crate::commands::text::thousands;
use crate::config::Config;

/// What the check knows about the campaign's page before a send.
pub(crate) struct Launch {
    page_id: String,
    /// The page's ceiling (`HERALD_PAGE_RATE_PER_SEC[_<PAGE_ID>]`).
    ceiling: u32,
    /// The campaign's `delivery.rate_per_sec`.
    campaign_rate: u32,
    /// The page's engaged users and where the number came from, or why it is unknown.
    engaged: Result<(u64, EngagedFrom), String>,
    /// Herald's own calls for the page in the last 24 hours, or why they are not counted.
    used: Result<u64, String>,
}

impl Launch {
    /// The page's ceiling and engaged users: `flag` when given, else the store's count of
    /// people the page can message (a store that does not exist yet is not created).
    pub(crate) async fn gather(config: &Config, campaign: &Campaign, flag: Option<u64>) -> Self {
        let page_id = campaign.page_id().to_owned();
        let ceiling = config
            .page_rates
            .get(&page_id)
            .copied()
            .unwrap_or(config.page_rate_per_sec)
            .get();
        let stored = from_store(&config.database_url, &page_id).await;
        let engaged = match (flag, &stored) {
            (Some(users), _) => Ok((users, EngagedFrom::Flag)),
            (None, Ok((0, _))) => Err(format!("the store knows no one page {page_id} can message")),
            (None, Ok((users, _))) => Ok((*users, EngagedFrom::Store)),
            (None, Err(why)) => Err(why.clone()),
        };
        Self {
            page_id,
            ceiling,
            campaign_rate: campaign.delivery().rate_per_sec,
            engaged,
            used: stored.map(|(_, used)| used),
        }
    }

    /// The budget against `calls`, when the engaged users are known.
    fn budget(&self, calls: u64) -> Option<Budget> {
        let (engaged_users, from) = *self.engaged.as_ref().ok()?;
        Some(Budget {
            engaged_users,
            from,
            used: self.used.as_ref().copied().unwrap_or(0),
            calls,
        })
    }

    /// Prints the check for a campaign of `calls` calls (one per job).
    pub(crate) fn print(&self, calls: u64, what_if: Option<u32>) {
        let page = &self.page_id;
        match self.budget(calls) {
            Some(budget) => {
                let whose = match budget.from {
                    EngagedFrom::Flag => "--engaged-users",
                    EngagedFrom::Store => "the store's count of people the page can message",
                };
                out(&format!(
                    "daily budget: {} calls per 24 h for page {page} ({CALLS_PER_ENGAGED_USER} × {} \
                     engaged users, {whose})",
                    thousands(budget.daily()),
                    thousands(budget.engaged_users)
                ));
                match &self.used {
                    Ok(used) => out(&format!(
                        "used in the last 24 h: {} calls (Herald's own for this page, from its \
                         results; other apps' calls are not seen)",
                        thousands(*used)
                    )),
                    Err(why) => out(&format!("used in the last 24 h: not counted ({why})")),
                }
                out(&format!(
                    "campaign calls: {} (one per job; retries come on top)",
                    thousands(calls)
                ));
                match budget.left_after() {
                    Ok(left) => out(&format!(
                        "left after it: {} ({:.1} % of the budget)",
                        thousands(left),
                        percent(left, budget.daily())
                    )),
                    Err(over) => out(&format!("left after it: none, {} over", thousands(over))),
                }
            }
            None => out(&format!(
                "daily budget: unknown ({}); pass --engaged-users N to check the campaign \
                 against Graph's {CALLS_PER_ENGAGED_USER} calls per engaged user a day",
                self.engaged.as_ref().err().map_or("", String::as_str)
            )),
        }
        let rate = self.ceiling.min(self.campaign_rate);
        out(&format!(
            "send time: {} at {:.0}/s ({:.0} % of {rate}/s, the lower of the page's ceiling \
             {}/s and the campaign's rate_per_sec {})",
            time(calls, rate),
            f64::from(rate) * PACING_SHARE,
            PACING_SHARE * 100.0,
            self.ceiling,
            self.campaign_rate
        ));
        if let Some(what_if) = what_if {
            let rate = self.ceiling.min(what_if);
            out(&format!(
                "send time at --rate {what_if}: {} at {:.0}/s",
                time(calls, rate),
                f64::from(rate) * PACING_SHARE
            ));
        }
    }

    /// Before a real send: `Err(message)` when the campaign's calls exceed the budget the check
    /// can see. The calls are counted only when a cheap upper bound (the segment's lines, or
    /// the store's users) does not already fit.
    pub(crate) async fn refuse_over_budget(
        &self,
        campaign: &Campaign,
        segment: &SegmentInput,
        store: &Store,
        strict: bool,
    ) -> Result<(), String> {
        let Some(daily) = self.budget(0).map(|budget| budget.daily()) else {
            return Ok(());
        };
        let bound = match segment {
            SegmentInput::File(path) => lines(path).unwrap_or(u64::MAX),
            SegmentInput::Store => store
                .audience_bound(&self.page_id)
                .await
                .unwrap_or(u64::MAX),
        };
        if bound <= daily {
            return Ok(());
        }
        let counted = match segment {
            SegmentInput::File(path) => dry_run(campaign, path, strict),
            SegmentInput::Store => dry_run_store(campaign, store).await,
        };
        // A segment the dry run cannot read fails the send itself, with its own message.
        let Ok(report) = counted else { return Ok(()) };
        let Some(budget) = self.budget(report.jobs) else {
            return Ok(());
        };
        match budget.left_after() {
            Ok(_) => Ok(()),
            Err(over) => Err(format!(
                "the campaign needs {} calls, {} more than page {} has left of its daily budget \
                 of {} ({CALLS_PER_ENGAGED_USER} × {} engaged users, {} used in the last 24 h); \
                 nothing was published. Graph \
                 answers 613 to every call past the budget until enough of the day's calls \
                 are 24 hours old, and workers pause the page until then. Narrow the segment, \
                 split the campaign over days, or pass --over-budget to send it anyway",
                thousands(report.jobs),
                thousands(over),
                self.page_id,
                thousands(budget.daily()),
                thousands(budget.engaged_users),
                thousands(budget.used)
            )),
        }
    }
}

/// From the store: the people `page_id` can message and Herald's calls for it in the last 24
/// hours, or why the store cannot say (a store that does not exist yet is not created).
async fn from_store(url: &Secret, page_id: &str) -> Result<(u64, u64), String> {
    if !Store::exists(url) {
        return Err("there is no store yet (HERALD_DATABASE_URL)".to_owned());
    }
    let store = Store::connect(url)
        .await
        .map_err(|error| format!("the store cannot be read: {error}"))?;
    let day_ago = herald_core::clock::now_ms() - 86_400_000;
    let counts = async {
        let engaged = store.messageable_count(page_id).await?;
        let used = store.calls_since(page_id, day_ago).await?;
        Ok::<_, herald_store::StoreError>((engaged, used))
    }
    .await;
    store.close().await;
    counts.map_err(|error| format!("the store cannot be read: {error}"))
}

/// Lines of a file: no segment has more rows than that.
fn lines(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0; 1 << 16];
    let (mut count, mut last) = (0, b'\n');
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        count += buffer[..read].iter().filter(|byte| **byte == b'\n').count() as u64;
        last = buffer[read - 1];
    }
    Ok(count + u64::from(last != b'\n'))
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// How long `calls` take at `rate`, paced at `PACING_SHARE` of it.
fn time(calls: u64, rate: u32) -> String {
    let took = budget::send_time(calls, f64::from(rate) * PACING_SHARE);
    // Whole seconds, rounded up: a campaign of 10 calls takes "1s", not "0s".
    format_duration(Duration::from_secs(took.as_secs_f64().ceil() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_a_last_line_without_newline() {
        let dir = tempfile::tempdir().expect("dir");
        let check = |text: &str, expected: u64| {
            let path = dir.path().join("s.csv");
            std::fs::write(&path, text).expect("write");
            assert_eq!(lines(&path).expect("lines"), expected, "{text:?}");
        };
        check("", 0);
        check("a\n", 1);
        check("a\nb", 2);
        check("a\nb\n", 2);
    }

    #[test]
    fn send_time_rounds_up_to_whole_seconds() {
        assert_eq!(time(9_800, 250), "40s");
        assert_eq!(time(10, 250), "1s");
        assert_eq!(time(0, 250), "0s");
        assert_eq!(time(1_000_000, 250), "1h8m2s");
    }
}
