//! The launch check of a campaign, for `herald campaign send` and the API alike: what is known
//! about the page's daily call budget (the caller's number of engaged users, else the store's
//! count of people the page can message; Herald's own calls for the page in the last 24 hours),
//! the report a dry run shows (`LaunchReport`), and the refusal of a send that would go over
//! it. The arithmetic is `budget.rs`.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use herald_core::campaign::Campaign;
use herald_core::rates::PACING_SHARE;
use herald_store::Store;
use serde::Serialize;

use crate::budget::{Budget, CALLS_PER_ENGAGED_USER, EngagedFrom, send_time};
use crate::dry::{dry_run, dry_run_store, dry_run_users};
use crate::spec::SegmentInput;

/// What the check knows about the campaign's page before a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchCheck {
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

/// A launch check as a dry run reports it (the API's JSON; the CLI prints the same figures).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaunchReport {
    pub page_id: String,
    /// The page's budget, when the number of engaged users is known.
    pub budget: Option<BudgetReport>,
    /// Why the budget is unknown, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_unknown: Option<String>,
    /// Graph calls the campaign makes: one per job (retries come on top).
    pub campaign_calls: u64,
    /// The lower of the page's ceiling and the campaign's `rate_per_sec`.
    pub rate_per_sec: u32,
    /// The page's ceiling.
    pub page_ceiling: u32,
    /// The campaign's `rate_per_sec`.
    pub campaign_rate_per_sec: u32,
    /// What the workers pace at: `PACING_SHARE` of `rate_per_sec`.
    pub paced_per_sec: f64,
    /// How long the campaign takes at that pace, whole seconds rounded up.
    pub send_time_secs: u64,
    /// The same at a what-if rate, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what_if: Option<WhatIf>,
}

/// The page's daily call budget against the campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetReport {
    /// `CALLS_PER_ENGAGED_USER` × `engaged_users`.
    pub daily_calls: u64,
    pub engaged_users: u64,
    /// `given` (by the caller) or `store` (people the page can message).
    pub engaged_from: &'static str,
    /// Herald's own calls for the page in the last 24 hours (its results' attempts); other
    /// apps' calls are not seen. `None` when the store could not say.
    pub used_last_24h: Option<u64>,
    /// Why the calls already made are not counted, when they are not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_unknown: Option<String>,
    /// What is left after the calls already made and the campaign's.
    pub left_after: Option<u64>,
    /// By how much they are over the budget, when they are.
    pub over_by: Option<u64>,
}

/// A campaign's send time at a what-if rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhatIf {
    /// The rate asked for.
    pub asked_per_sec: u32,
    /// That rate capped at the page's ceiling.
    pub rate_per_sec: u32,
    pub paced_per_sec: f64,
    pub send_time_secs: u64,
}

impl LaunchCheck {
    /// The check for `campaign` at a page ceiling of `ceiling`: engaged users from `given` when
    /// set, else from the store (`Err` says why there is none to read).
    pub async fn gather(
        campaign: &Campaign,
        ceiling: u32,
        given: Option<u64>,
        store: Result<&Store, String>,
    ) -> Self {
        let page_id = campaign.page_id().to_owned();
        let stored = match store {
            Ok(store) => page_counts(store, &page_id).await,
            Err(why) => Err(why),
        };
        let engaged = match (given, &stored) {
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
    pub fn budget(&self, calls: u64) -> Option<Budget> {
        let (engaged_users, from) = *self.engaged.as_ref().ok()?;
        Some(Budget {
            engaged_users,
            from,
            used: self.used.as_ref().copied().unwrap_or(0),
            calls,
        })
    }

    /// The report for a campaign of `calls` calls, and at the what-if rate `what_if`.
    pub fn report(&self, calls: u64, what_if: Option<u32>) -> LaunchReport {
        let budget = self.budget(calls).map(|budget| {
            let left = budget.left_after();
            BudgetReport {
                daily_calls: budget.daily(),
                engaged_users: budget.engaged_users,
                engaged_from: match budget.from {
                    EngagedFrom::Flag => "given",
                    EngagedFrom::Store => "store",
                },
                used_last_24h: self.used.as_ref().ok().copied(),
                used_unknown: self.used.as_ref().err().cloned(),
                left_after: left.ok(),
                over_by: left.err(),
            }
        });
        let rate = self.ceiling.min(self.campaign_rate);
        LaunchReport {
            page_id: self.page_id.clone(),
            budget,
            budget_unknown: self.engaged.as_ref().err().cloned(),
            campaign_calls: calls,
            rate_per_sec: rate,
            page_ceiling: self.ceiling,
            campaign_rate_per_sec: self.campaign_rate,
            paced_per_sec: paced(rate),
            send_time_secs: whole_secs(calls, rate),
            what_if: what_if.map(|asked| {
                let rate = self.ceiling.min(asked);
                WhatIf {
                    asked_per_sec: asked,
                    rate_per_sec: rate,
                    paced_per_sec: paced(rate),
                    send_time_secs: whole_secs(calls, rate),
                }
            }),
        }
    }

    /// Before a real send: `Some(why)` when the campaign's calls exceed the budget the check
    /// can see. The calls are counted (a dry run) only when a cheap upper bound (the segment's
    /// lines, or the store's users) does not already fit. The message says what to do except
    /// how to override, which is the caller's flag.
    pub async fn over_budget(
        &self,
        campaign: &Campaign,
        segment: &SegmentInput,
        store: &Store,
        strict: bool,
    ) -> Option<String> {
        let daily = self.budget(0)?.daily();
        let bound = match segment {
            SegmentInput::File(path) => lines(path).unwrap_or(u64::MAX),
            SegmentInput::Store => store
                .audience_bound(&self.page_id)
                .await
                .unwrap_or(u64::MAX),
            SegmentInput::Users(users) => u64::try_from(users.len()).unwrap_or(u64::MAX),
        };
        if bound <= daily {
            return None;
        }
        let counted = match segment {
            // Reading a whole file is blocking work: off the async runtime.
            SegmentInput::File(path) => {
                let (campaign, path) = (campaign.clone(), path.clone());
                tokio::task::spawn_blocking(move || dry_run(&campaign, &path, strict))
                    .await
                    .ok()?
            }
            SegmentInput::Store => dry_run_store(campaign, store).await,
            SegmentInput::Users(users) => Ok(dry_run_users(campaign, users)),
        };
        // A segment the dry run cannot read fails the send itself, with its own message.
        let report = counted.ok()?;
        let budget = self.budget(report.jobs)?;
        let over = budget.left_after().err()?;
        Some(format!(
            "the campaign needs {} calls, {} more than page {} has left of its daily budget of {} \
             ({CALLS_PER_ENGAGED_USER} × {} engaged users, {} used in the last 24 h); nothing \
             was published. Graph answers 613 to every call past the budget until enough of the \
             day's calls are 24 hours old, and workers pause the page until then. Narrow the \
             segment or split the campaign over days",
            thousands(report.jobs),
            thousands(over),
            self.page_id,
            thousands(budget.daily()),
            thousands(budget.engaged_users),
            thousands(budget.used)
        ))
    }
}

/// From the store: the people `page_id` can message and Herald's calls for it in the last 24
/// hours, or why the store cannot say.
async fn page_counts(store: &Store, page_id: &str) -> Result<(u64, u64), String> {
    let day_ago = herald_core::clock::now_ms() - 86_400_000;
    let counts = async {
        let engaged = store.messageable_count(page_id).await?;
        let used = store.calls_since(page_id, day_ago).await?;
        Ok::<_, herald_store::StoreError>((engaged, used))
    };
    counts
        .await
        .map_err(|error| format!("the store cannot be read: {error}"))
}

/// The pace of a page at `rate`: `PACING_SHARE` of it.
fn paced(rate: u32) -> f64 {
    f64::from(rate) * PACING_SHARE
}

/// How long `calls` take at `rate`, paced at `PACING_SHARE` of it, in whole seconds rounded up
/// (a campaign of 10 calls takes 1 s, not 0).
fn whole_secs(calls: u64, rate: u32) -> u64 {
    let took: Duration = send_time(calls, paced(rate));
    took.as_secs_f64().ceil() as u64
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

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
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
        assert_eq!(whole_secs(9_800, 250), 40);
        assert_eq!(whole_secs(10, 250), 1);
        assert_eq!(whole_secs(0, 250), 0);
        assert_eq!(whole_secs(1_000_000, 250), 4_082);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
