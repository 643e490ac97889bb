//! The launch check: a page's rolling 24-hour call budget on Graph (200 calls × the people the
//! page can message, docs/messenger-platform.md §4.1) against what a campaign will use, and
//! how long the campaign takes at the page's rate. Pure arithmetic: where the numbers come from
//! (a flag, the store, the segment) is the caller's business.

use std::time::Duration;

/// Calls a page may make per engaged user in Graph's rolling 24 hours.
pub const CALLS_PER_ENGAGED_USER: u64 = 200;

/// Where the number of engaged users came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngagedFrom {
    /// `--engaged-users N`.
    Flag,
    /// The store's count of people the page can message (not opted out).
    Store,
}

/// One page's budget against one campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// People the page can message.
    pub engaged_users: u64,
    pub from: EngagedFrom,
    /// Calls already made in the last 24 hours that the caller knows of.
    pub used: u64,
    /// Graph calls the campaign makes: one per job (retries come on top).
    pub calls: u64,
}

impl Budget {
    /// The page's calls per rolling 24 hours.
    pub fn daily(&self) -> u64 {
        self.engaged_users.saturating_mul(CALLS_PER_ENGAGED_USER)
    }

    /// What is left of the daily budget after the calls already made and the campaign's, or
    /// `Err(by how much they are over)`.
    pub fn left_after(&self) -> Result<u64, u64> {
        let daily = self.daily();
        let needed = self.used.saturating_add(self.calls);
        daily.checked_sub(needed).ok_or_else(|| needed - daily)
    }
}

/// How long `calls` take at `per_sec` calls a second (zero calls: no time).
pub fn send_time(calls: u64, per_sec: f64) -> Duration {
    if calls == 0 || per_sec <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(calls as f64 / per_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_200_calls_per_engaged_user() {
        let budget = |engaged_users, calls| Budget {
            engaged_users,
            from: EngagedFrom::Flag,
            used: 0,
            calls,
        };
        assert_eq!(budget(5_000, 0).daily(), 1_000_000);
        assert_eq!(budget(5_000, 999_999).left_after(), Ok(1));
        assert_eq!(budget(5_000, 1_000_000).left_after(), Ok(0));
        assert_eq!(budget(10, 2_500).left_after(), Err(500));
        assert_eq!(budget(u64::MAX, 1).daily(), u64::MAX);
        let used = Budget {
            used: 400_000,
            ..budget(5_000, 700_000)
        };
        assert_eq!(used.left_after(), Err(100_000));
    }

    #[test]
    fn send_time_is_calls_over_rate() {
        assert_eq!(send_time(9_800, 245.0), Duration::from_secs(40));
        assert_eq!(send_time(0, 245.0), Duration::ZERO);
        assert_eq!(send_time(10, 0.0), Duration::ZERO);
    }
}
