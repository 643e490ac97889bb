//! Scripted, probabilistic misbehaviour: answer latency, held-open calls, 5xx answers, transient
//! errors and the trigger for 613 bursts. It rolls the dice; per-recipient outcomes are in
//! `live.rs` and the burst bookkeeping is in `limits.rs`.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::config::{Latency, SimConfig};

/// A fault chosen for one call, before it reaches the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Hold the call open this long, then drop the connection without answering.
    Hold(Duration),
    /// HTTP 500 with Graph code 1 in the body.
    ServerCodeOne,
    /// HTTP 500 with Graph code 2, `is_transient: true`.
    ServerCodeTwo,
    /// HTTP 503 with an empty body, as a front proxy answers.
    ServerEmpty,
    /// HTTP 400 with code 2, `is_transient: true`.
    Transient,
}

/// True with probability `p`; never touches the generator when `p` is zero.
pub(crate) fn roll(p: f64) -> bool {
    p > 0.0 && rand::rng().random_bool(p.min(1.0))
}

/// The fault for this call, if any (timeouts first, then 5xx, then transient errors).
pub(crate) fn pick(config: &SimConfig) -> Option<Fault> {
    if roll(config.timeout_rate) {
        return Some(Fault::Hold(Duration::from_millis(config.timeout_hold_ms)));
    }
    if roll(config.fail_rate) {
        return Some(match rand::rng().random_range(0..3) {
            0 => Fault::ServerCodeOne,
            1 => Fault::ServerCodeTwo,
            _ => Fault::ServerEmpty,
        });
    }
    roll(config.transient_rate).then_some(Fault::Transient)
}

/// The burst to start for this call's page, if the throttle roll hits.
pub(crate) fn burst(config: &SimConfig) -> Option<Duration> {
    roll(config.throttle_rate).then(|| Duration::from_millis(config.throttle_burst_ms.max(1)))
}

/// A latency sample; `None` when there is nothing to wait for.
pub(crate) fn latency(latency: &Latency) -> Option<Duration> {
    let ms = match *latency {
        Latency::None => return None,
        Latency::Fixed { ms } => ms,
        Latency::Uniform { min_ms, max_ms } => {
            rand::rng().random_range(min_ms..=max_ms.max(min_ms))
        }
        Latency::Normal { mean_ms, jitter_ms } => {
            // Irwin-Hall: the sum of 12 uniforms minus 6 is close to a standard normal.
            let mut rng = rand::rng();
            let z: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
            let sample = mean_ms as f64 + z * jitter_ms as f64;
            sample.max(0.0).round() as u64
        }
    };
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Sleeps unless the simulator shuts down first; returns whether the whole time passed.
pub(crate) async fn pause(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certain_and_impossible_rolls() {
        let never = SimConfig::default();
        assert_eq!(pick(&never), None);
        assert_eq!(burst(&never), None);
        let hold = SimConfig {
            timeout_rate: 1.0,
            timeout_hold_ms: 5,
            fail_rate: 1.0,
            ..never.clone()
        };
        assert_eq!(pick(&hold), Some(Fault::Hold(Duration::from_millis(5))));
        let fail = SimConfig {
            fail_rate: 1.0,
            transient_rate: 1.0,
            ..never.clone()
        };
        assert!(matches!(
            pick(&fail),
            Some(Fault::ServerCodeOne | Fault::ServerCodeTwo | Fault::ServerEmpty)
        ));
        let transient = SimConfig {
            transient_rate: 1.0,
            ..never
        };
        assert_eq!(pick(&transient), Some(Fault::Transient));
    }

    #[test]
    fn latency_samples_stay_in_range() {
        assert_eq!(latency(&Latency::None), None);
        assert_eq!(
            latency(&Latency::Fixed { ms: 7 }),
            Some(Duration::from_millis(7))
        );
        for _ in 0..200 {
            let uniform = latency(&Latency::Uniform {
                min_ms: 3,
                max_ms: 5,
            })
            .unwrap();
            assert!((3..=5).contains(&uniform.as_millis()));
            // Twelve uniforms bound z to [-6, 6].
            let normal = latency(&Latency::Normal {
                mean_ms: 100,
                jitter_ms: 10,
            })
            .unwrap_or_default();
            assert!((40..=160).contains(&normal.as_millis()));
        }
    }
}
