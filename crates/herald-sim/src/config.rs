//! `SimConfig`: everything the simulator can be told at start or through `POST /_sim/config`.
//! It owns the shape and validation of the settings, not their run-time use (see `live.rs`).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Calls a page may make per engaged user in the budget window (docs/messenger-platform.md
/// §4.1).
pub(crate) const CALLS_PER_ENGAGED_USER: u64 = 200;

/// The simulator's settings. Every field has a default, so a JSON or TOML document may name only
/// what it changes; `POST /_sim/config` merges a partial document into the current settings.
///
/// `Serialize` includes the secrets (it is used for the partial-update merge); `Debug` and
/// `GET /_sim/config` print them as `***`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Accepted calls allowed per page in any 1000 ms span (Meta: 300 text sends/s per page).
    pub rate_per_sec: u32,
    /// Per-page overrides of `rate_per_sec` (page id → calls per second).
    pub page_rates: HashMap<String, u32>,
    /// People each page can message. A page's rolling call budget is 200 calls × this per
    /// `budget_window_ms`; `call_count` in `X-Business-Use-Case-Usage` is its share used, and
    /// over 100 % every call gets 613 until old calls leave the window.
    pub engaged_users: u64,
    /// Per-page overrides of `engaged_users` (page id → engaged users).
    pub page_engaged_users: HashMap<String, u64>,
    /// The budget's rolling window: 24 hours as on Graph, shorter so tests can exhaust it.
    pub budget_window_ms: u64,
    /// Time the simulator waits before answering a Send API call.
    pub latency: Latency,
    /// Probability of an HTTP 5xx answer (Graph code 1 or 2 in the body, or an empty body).
    pub fail_rate: f64,
    /// Probability of HTTP 400 code 2 with `is_transient: true`.
    pub transient_rate: f64,
    /// Probability that a call is held open for `timeout_hold_ms` and then dropped unanswered.
    pub timeout_rate: f64,
    /// How long a "timeout" call is held before the connection is closed.
    pub timeout_hold_ms: u64,
    /// Probability that a call starts a 613 burst for its page.
    pub throttle_rate: f64,
    /// Length of a 613 burst started by `throttle_rate`: every call for the page gets 613
    /// meanwhile.
    pub throttle_burst_ms: u64,
    /// `estimated_time_to_regain_access` (minutes) reported during a scripted 613 burst
    /// (`throttle_rate`). Default 1, as Meta reports a positive value whenever it throttles
    /// a page. Set 0 for fast tests.
    pub throttle_regain_minutes: u32,
    /// `X-Business-Use-Case-Usage` is sent on 200 answers once the page's use of its call
    /// budget reaches this percentage (always on 613 answers).
    pub usage_header_min_pct: u32,
    /// App secret: when set, every call needs a valid `appsecret_proof`, and webhook POSTs are
    /// signed with it.
    pub app_secret: Option<String>,
    /// Page id → page access token. Empty: any non-empty token is valid for any page.
    pub tokens: HashMap<String, String>,
    /// Where delivery/read receipts and inbound messages are POSTed (plain `http://` only).
    pub webhook_url: Option<String>,
    /// Send delivery and read receipts for accepted messages to `webhook_url`.
    pub receipts: bool,
    /// Delay between accepting a message and posting its delivery receipt.
    pub delivery_delay_ms: u64,
    /// Delay between accepting a message and posting its read receipt.
    pub read_delay_ms: u64,
    /// Post a `message_echoes` event (`is_echo`, with the request's `metadata`, `app_id` and
    /// `mid`) to `webhook_url` for every accepted message, as Meta does for a page's own sends.
    pub echoes: bool,
    /// Delay between accepting a message and posting its echo.
    pub echo_delay_ms: u64,
    /// The `app_id` echoes carry: the app that sent the message.
    pub app_id: String,
    /// Probability that an accepted call's answer is lost: the message is recorded as accepted
    /// (and echoed), but the connection closes without an answer.
    pub lost_answer_rate: f64,
    /// Extra attempts for a webhook POST answered with a non-2xx status or a transport error.
    pub webhook_retries: u32,
    /// First retry delay for webhook POSTs; doubles on each further attempt.
    pub webhook_backoff_ms: u64,
    /// Scripted outcomes by recipient; the first matching rule wins.
    pub psid_rules: Vec<PsidRule>,
    /// Keep accepted request bodies for `GET /_sim/messages`. Counts are kept either way.
    pub record_bodies: bool,
    /// At most this many accepted bodies are kept; later ones are counted only.
    pub max_recorded: usize,
    /// Newest Graph version served (`v{N}.0`); older versions are served as Meta serves expired
    /// ones, newer or malformed ones get code 2500.
    pub latest_version: u32,
}

/// Answer latency for Send API calls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Answer at once.
    #[default]
    None,
    /// Always the same delay.
    Fixed {
        /// Delay in milliseconds.
        ms: u64,
    },
    /// Uniformly distributed in `min_ms..=max_ms`.
    Uniform {
        /// Smallest delay in milliseconds.
        min_ms: u64,
        /// Largest delay in milliseconds.
        max_ms: u64,
    },
    /// Roughly normal around `mean_ms` with standard deviation `jitter_ms`, never below zero.
    Normal {
        /// Mean delay in milliseconds.
        mean_ms: u64,
        /// Standard deviation in milliseconds.
        jitter_ms: u64,
    },
}

/// A scripted outcome for the recipients a matcher selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsidRule {
    /// Which recipients the rule applies to.
    #[serde(flatten)]
    pub matcher: PsidMatch,
    /// What their calls get.
    pub outcome: PsidOutcome,
}

/// Selects recipients by their identifier (`recipient.id`, or the value of the other kinds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PsidMatch {
    /// Identifiers starting with this string: `{"prefix": "551"}`.
    Prefix(String),
    /// Exactly these identifiers: `{"psids": ["1", "2"]}`.
    Psids(Vec<String>),
}

/// What a call for a matched recipient gets (docs/messenger-platform.md §3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PsidOutcome {
    /// Code 551, FacebookApiException, "This person isn't available right now."
    #[serde(alias = "551")]
    Unavailable,
    /// Code 10 / 2018278: sent outside the allowed window.
    #[serde(alias = "2018278")]
    OutsideWindow,
    /// Code 100 / 2018001: no matching user found.
    #[serde(alias = "2018001")]
    NoMatchingUser,
    /// Code 200 / 1545041: this person isn't available right now.
    #[serde(alias = "1545041")]
    NotAvailable,
    /// Code 190 / 460: the page token was invalidated.
    #[serde(alias = "190")]
    TokenRevoked,
    /// The first call for the recipient gets code 2 with `is_transient: true`; later calls succeed.
    FailFirst,
    /// Accepted and recorded (and echoed), but the answer is lost: the connection closes
    /// before the client reads it, so it cannot tell whether Meta took the message.
    LoseAnswer,
    /// Any Graph error: `{"error": {"code": 368}}`; HTTP 400, a generic message.
    Error {
        /// Graph `code`.
        code: u32,
        /// Graph `error_subcode`.
        #[serde(default)]
        subcode: Option<u32>,
    },
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            rate_per_sec: 300,
            page_rates: HashMap::new(),
            engaged_users: 100_000,
            page_engaged_users: HashMap::new(),
            budget_window_ms: 86_400_000,
            latency: Latency::None,
            fail_rate: 0.0,
            transient_rate: 0.0,
            timeout_rate: 0.0,
            timeout_hold_ms: 60_000,
            throttle_rate: 0.0,
            throttle_burst_ms: 1_000,
            throttle_regain_minutes: 1,
            usage_header_min_pct: 10,
            app_secret: None,
            tokens: HashMap::new(),
            webhook_url: None,
            receipts: false,
            delivery_delay_ms: 50,
            read_delay_ms: 200,
            echoes: false,
            echo_delay_ms: 100,
            app_id: "1000000000000099".to_owned(),
            lost_answer_rate: 0.0,
            webhook_retries: 3,
            webhook_backoff_ms: 200,
            psid_rules: Vec::new(),
            record_bodies: true,
            max_recorded: 1_000_000,
            latest_version: 26,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pages: Vec<&String> = self.tokens.keys().collect();
        f.debug_struct("SimConfig")
            .field("rate_per_sec", &self.rate_per_sec)
            .field("page_rates", &self.page_rates)
            .field("engaged_users", &self.engaged_users)
            .field("page_engaged_users", &self.page_engaged_users)
            .field("budget_window_ms", &self.budget_window_ms)
            .field("latency", &self.latency)
            .field("fail_rate", &self.fail_rate)
            .field("transient_rate", &self.transient_rate)
            .field("timeout_rate", &self.timeout_rate)
            .field("throttle_rate", &self.throttle_rate)
            .field("app_secret", &self.app_secret.as_ref().map(|_| "***"))
            .field("token_pages", &pages)
            .field("webhook_url", &self.webhook_url)
            .field("receipts", &self.receipts)
            .field("echoes", &self.echoes)
            .field("lost_answer_rate", &self.lost_answer_rate)
            .field("psid_rules", &self.psid_rules)
            .field("record_bodies", &self.record_bodies)
            .finish_non_exhaustive()
    }
}

impl SimConfig {
    /// Every problem with the settings at once (probabilities outside 0..=1, zero rates, ...).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (name, p) in [
            ("fail_rate", self.fail_rate),
            ("transient_rate", self.transient_rate),
            ("timeout_rate", self.timeout_rate),
            ("throttle_rate", self.throttle_rate),
            ("lost_answer_rate", self.lost_answer_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                problems.push(format!("{name} must be between 0 and 1, got {p}"));
            }
        }
        if self.rate_per_sec == 0 {
            problems.push("rate_per_sec must be at least 1".to_owned());
        }
        for (page, rate) in &self.page_rates {
            if *rate == 0 {
                problems.push(format!("page_rates.{page} must be at least 1"));
            }
        }
        if self.engaged_users == 0 {
            problems.push("engaged_users must be at least 1".to_owned());
        }
        for (page, users) in &self.page_engaged_users {
            if *users == 0 {
                problems.push(format!("page_engaged_users.{page} must be at least 1"));
            }
        }
        if self.budget_window_ms < 1_000 {
            problems.push(format!(
                "budget_window_ms must be at least 1000, got {}",
                self.budget_window_ms
            ));
        }
        if let Latency::Uniform { min_ms, max_ms } = self.latency
            && min_ms > max_ms
        {
            problems.push(format!("latency min_ms {min_ms} is above max_ms {max_ms}"));
        }
        for (page, token) in &self.tokens {
            if page.is_empty() || token.is_empty() {
                problems.push("tokens need a non-empty page id and token".to_owned());
            }
        }
        if let Some(url) = &self.webhook_url
            && !url.starts_with("http://")
        {
            problems.push("webhook_url must be a plain http:// URL".to_owned());
        }
        if self.app_secret.as_deref() == Some("") {
            problems.push("app_secret must not be empty".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Adds one `--token PAGE_ID=TOKEN` flag value to `tokens`.
    pub fn add_token_flag(&mut self, flag: &str) -> Result<(), String> {
        match flag.split_once('=') {
            Some((page, token)) if !page.is_empty() && !token.is_empty() => {
                self.tokens.insert(page.to_owned(), token.to_owned());
                Ok(())
            }
            // Never echo the flag: it holds a token.
            _ => Err("--token expects PAGE_ID=TOKEN".to_owned()),
        }
    }

    /// The rate limit for one page.
    pub fn rate_for(&self, page_id: &str) -> u32 {
        self.page_rates
            .get(page_id)
            .copied()
            .unwrap_or(self.rate_per_sec)
    }

    /// The page's call budget: 200 calls × its engaged users per `budget_window_ms`.
    pub fn call_budget_for(&self, page_id: &str) -> u64 {
        let engaged = self
            .page_engaged_users
            .get(page_id)
            .copied()
            .unwrap_or(self.engaged_users);
        engaged.saturating_mul(CALLS_PER_ENGAGED_USER)
    }

    /// Merges a partial JSON object (top-level keys replace the current values) and validates.
    pub(crate) fn merged(&self, patch: &serde_json::Value) -> Result<SimConfig, Vec<String>> {
        let serde_json::Value::Object(patch) = patch else {
            return Err(vec!["the config patch must be a JSON object".to_owned()]);
        };
        let mut current = serde_json::to_value(self).map_err(|e| vec![e.to_string()])?;
        if let serde_json::Value::Object(map) = &mut current {
            for (key, value) in patch {
                map.insert(key.clone(), value.clone());
            }
        }
        let next: SimConfig = serde_json::from_value(current).map_err(|e| vec![e.to_string()])?;
        next.validate()?;
        Ok(next)
    }
}

impl Latency {
    /// A fixed latency; zero means none (what `--latency-ms N` sets).
    pub fn fixed_ms(ms: u64) -> Self {
        if ms == 0 {
            Self::None
        } else {
            Self::Fixed { ms }
        }
    }
}

impl PsidRule {
    /// A rule for identifiers starting with `prefix`.
    pub fn prefix(prefix: impl Into<String>, outcome: PsidOutcome) -> Self {
        Self {
            matcher: PsidMatch::Prefix(prefix.into()),
            outcome,
        }
    }

    /// A rule for exactly these identifiers.
    pub fn exact<I, S>(psids: I, outcome: PsidOutcome) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let psids = psids.into_iter().map(Into::into).collect();
        Self {
            matcher: PsidMatch::Psids(psids),
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_unnamed_fields_and_rejects_unknown_ones() {
        let base = SimConfig {
            app_secret: Some("s".into()),
            ..SimConfig::default()
        };
        let patch = serde_json::json!({"rate_per_sec": 5, "latency": {"kind": "fixed", "ms": 3}});
        let next = base.merged(&patch).unwrap();
        assert_eq!(next.rate_per_sec, 5);
        assert_eq!(next.latency, Latency::Fixed { ms: 3 });
        assert_eq!(next.app_secret.as_deref(), Some("s"));
        assert!(base.merged(&serde_json::json!({"nope": 1})).is_err());
        assert!(base.merged(&serde_json::json!({"fail_rate": 2.0})).is_err());
    }

    #[test]
    fn psid_rules_parse_from_json() {
        let rules: Vec<PsidRule> = serde_json::from_value(serde_json::json!([
            {"prefix": "551", "outcome": "unavailable"},
            {"psids": ["7"], "outcome": "fail_first"},
            {"prefix": "9", "outcome": {"error": {"code": 368}}},
        ]))
        .unwrap();
        assert_eq!(rules[0], PsidRule::prefix("551", PsidOutcome::Unavailable));
        assert_eq!(rules[1], PsidRule::exact(["7"], PsidOutcome::FailFirst));
        assert_eq!(
            rules[2].outcome,
            PsidOutcome::Error {
                code: 368,
                subcode: None
            }
        );
    }

    #[test]
    fn debug_and_flag_errors_hide_secrets() {
        let mut config = SimConfig {
            app_secret: Some("topsecret".into()),
            ..Default::default()
        };
        config.add_token_flag("1=pagetoken").unwrap();
        let err = config.add_token_flag("pagetoken-only").unwrap_err();
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("topsecret") && !debug.contains("pagetoken"),
            "{debug}"
        );
        assert!(!err.contains("pagetoken"));
    }
}
