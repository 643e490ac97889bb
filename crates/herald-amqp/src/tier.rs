//! `RetryTier`: the fixed delays a job can wait before it goes back to the send queue. Each tier is
//! a queue whose message TTL is the delay and whose dead-letter target is the jobs exchange
//! (declared in `topology.rs`). Choosing the delay for an attempt (backoff, `retry_after`) is the
//! worker's business; this only maps a wanted delay onto a tier.

use std::time::Duration;

/// One retry delay queue: `<prefix>.retry.<name>`, routing key `<name>` on `<prefix>.retry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetryTier {
    /// 5 seconds.
    FiveSeconds,
    /// 30 seconds.
    ThirtySeconds,
    /// 2 minutes.
    TwoMinutes,
    /// 10 minutes.
    TenMinutes,
    /// 1 hour, the longest; longer waits are capped here.
    OneHour,
}

impl RetryTier {
    /// Every tier, shortest first.
    pub const ALL: [RetryTier; 5] = [
        Self::FiveSeconds,
        Self::ThirtySeconds,
        Self::TwoMinutes,
        Self::TenMinutes,
        Self::OneHour,
    ];

    /// How long a message waits in this tier before it is dead-lettered back to the send queue.
    pub fn delay(self) -> Duration {
        Duration::from_secs(match self {
            Self::FiveSeconds => 5,
            Self::ThirtySeconds => 30,
            Self::TwoMinutes => 120,
            Self::TenMinutes => 600,
            Self::OneHour => 3600,
        })
    }

    /// The queue-name suffix and routing key: `5s`, `30s`, `2m`, `10m`, `1h`.
    pub fn name(self) -> &'static str {
        match self {
            Self::FiveSeconds => "5s",
            Self::ThirtySeconds => "30s",
            Self::TwoMinutes => "2m",
            Self::TenMinutes => "10m",
            Self::OneHour => "1h",
        }
    }

    /// The shortest tier that waits at least `wanted` (so a `retry_after` is a floor), capped at
    /// one hour.
    pub fn for_delay(wanted: Duration) -> RetryTier {
        Self::ALL
            .into_iter()
            .find(|tier| tier.delay() >= wanted)
            .unwrap_or(Self::OneHour)
    }
}

impl RetryTier {
    /// The longest tier that waits no longer than `wanted` (the shortest when `wanted` is under
    /// it): a job held for a pause of known length comes back by the time the pause ends (and
    /// is held again for whatever is left), instead of up to a whole longer tier after it.
    pub fn at_most(wanted: Duration) -> RetryTier {
        Self::ALL
            .into_iter()
            .rev()
            .find(|tier| tier.delay() <= wanted)
            .unwrap_or(Self::FiveSeconds)
    }
}

impl std::fmt::Display for RetryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_shortest_tier_that_waits_long_enough() {
        let check = |wanted_secs: u64, expected: RetryTier| {
            let wanted = Duration::from_secs(wanted_secs);
            assert_eq!(RetryTier::for_delay(wanted), expected, "{wanted_secs}s");
        };
        check(0, RetryTier::FiveSeconds);
        check(1, RetryTier::FiveSeconds);
        check(5, RetryTier::FiveSeconds);
        check(6, RetryTier::ThirtySeconds);
        check(30, RetryTier::ThirtySeconds);
        check(31, RetryTier::TwoMinutes);
        check(120, RetryTier::TwoMinutes);
        check(121, RetryTier::TenMinutes);
        check(600, RetryTier::TenMinutes);
        check(601, RetryTier::OneHour);
        check(3600, RetryTier::OneHour);
        check(86_400, RetryTier::OneHour);
        assert_eq!(
            RetryTier::for_delay(Duration::from_millis(5_001)),
            RetryTier::ThirtySeconds
        );
    }

    #[test]
    fn a_known_pause_takes_the_longest_tier_within_it() {
        for (wanted, tier) in [
            (0, RetryTier::FiveSeconds),
            (4, RetryTier::FiveSeconds),
            (5, RetryTier::FiveSeconds),
            (60, RetryTier::ThirtySeconds),
            (120, RetryTier::TwoMinutes),
            (7_200, RetryTier::OneHour),
        ] {
            assert_eq!(
                RetryTier::at_most(Duration::from_secs(wanted)),
                tier,
                "{wanted} s"
            );
        }
    }

    #[test]
    fn tiers_are_sorted_and_named() {
        let names: Vec<_> = RetryTier::ALL.iter().map(|tier| tier.to_string()).collect();
        assert_eq!(names, ["5s", "30s", "2m", "10m", "1h"]);
        assert!(
            RetryTier::ALL
                .windows(2)
                .all(|pair| pair[0].delay() < pair[1].delay())
        );
    }
}
