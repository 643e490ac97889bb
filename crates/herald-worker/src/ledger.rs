//! The send ledger as a worker sees it: `GET {ledger_url}/ledger/{job_id}` on `herald serve`,
//! which answers from the store what is known of one job's send (its shown result, Meta's echo
//! of its message). Only jobs that may have been sent already are looked up (see `verify.rs`);
//! ordinary jobs never touch it, so the hot path stays free of store reads.
//!
//! Why a lookup on `serve` rather than store access in every worker: workers then need no
//! database credentials, no pool per process, and no migrations in step with the store; a fleet
//! of fifty workers is not fifty pools on PostgreSQL; and SQLite (one file, one host) works for
//! a fleet spread over machines. The cost is one HTTP round trip per suspect job, which is rare.

use std::time::Duration;

use herald_core::Secret;
use reqwest::Url;
use serde::Deserialize;

/// How a worker reaches the send ledger.
#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// Base URL of `herald serve`'s API (`HERALD_LEDGER_URL`), e.g. `http://serve:8080`.
    pub url: String,
    /// Bearer token the API accepts for `/ledger` (`HERALD_LEDGER_TOKEN`).
    pub token: Option<Secret>,
    /// How long after a possible send its echo may still be on its way: a suspect job with
    /// neither a result nor an echo waits until this has passed since then, and is checked again
    /// before it is sent.
    pub horizon: Duration,
    /// Limit on one lookup; past it the ledger counts as unavailable.
    pub timeout: Duration,
    /// How long a suspect job waits for a ledger that does not answer, or whose records stay
    /// behind, before it is sent without the ledger's word (and counted as a possible
    /// duplicate): long enough for a serve restart or a store catching up with a busy
    /// campaign, short enough that a ledger that never comes back does not hold a campaign's
    /// stragglers for good.
    pub patience: Duration,
}

impl LedgerSettings {
    /// Settings for the ledger at `url` with the default horizon (5 s, the shortest retry
    /// tier), timeout (5 s: serve may wait a second or two for records in hand to be
    /// committed) and patience (15 min).
    pub fn new(url: impl Into<String>, token: Option<Secret>) -> Self {
        Self {
            url: url.into(),
            token,
            horizon: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            patience: Duration::from_secs(15 * 60),
        }
    }

    /// Problems with the settings, each naming its setting.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if base_url(&self.url).is_none() {
            problems.push("ledger url: must be an absolute http(s) URL".to_owned());
        }
        if self.timeout.is_zero() {
            problems.push("ledger timeout: must be above zero".to_owned());
        }
        problems
    }
}

/// What the ledger says about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A result is recorded: the job is finished, nothing to send or publish.
    Settled,
    /// No result, but Meta echoed the message: it was sent, with this message id.
    Echoed(Option<String>),
    /// Neither, and the store is up to date: the message was not sent.
    Unknown,
    /// Neither, but records may still be on their way to the store (a backlog, or webhook
    /// deliveries Meta will retry): ask again later.
    Behind,
}

/// Why the ledger could not answer (never contains the token or the URL's credentials).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LedgerError {
    #[error("the ledger did not answer: {0}")]
    Unreachable(String),
    #[error("the ledger answered http {0}")]
    Status(u16),
    #[error("the ledger's answer is not a ledger entry: {0}")]
    Body(String),
}

/// A client of the ledger.
pub(crate) struct Ledger {
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
    pub(crate) horizon: Duration,
    pub(crate) patience: Duration,
}

#[derive(Deserialize)]
struct Answer {
    result: Option<ShownResult>,
    echo: Option<EchoSeen>,
    /// Absent from a ledger that does not report it: taken as current.
    #[serde(default = "current_by_default")]
    current: bool,
}

fn current_by_default() -> bool {
    true
}

#[derive(Deserialize)]
struct ShownResult {
    status: String,
}

#[derive(Deserialize)]
struct EchoSeen {
    message_id: Option<String>,
}

/// How long an idle connection to serve is kept for the next lookup. herald serve closes a
/// connection that sends no request for 5 s (its header read timeout, against slow clients); a
/// lookup sent on a pooled connection just as serve closes it fails ("connection closed before
/// message completed"), so connections are dropped well before that.
const POOL_IDLE: Duration = Duration::from_secs(2);

impl Ledger {
    /// A client for valid `settings` (`problems` is empty); `None` otherwise.
    pub(crate) fn new(settings: &LedgerSettings) -> Option<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .ok()?;
        Some(Self {
            http,
            base: base_url(&settings.url)?,
            token: settings.token.clone(),
            horizon: settings.horizon,
            patience: settings.patience,
        })
    }

    /// The ledger entry of `job_id`.
    pub(crate) async fn lookup(&self, job_id: &str) -> Result<Entry, LedgerError> {
        let url = self.url(&["ledger", job_id])?;
        let answer: Answer = self.call(self.http.get(url)).await?;
        Ok(entry(answer))
    }

    /// Claims the send of `job_id` for `holder`: true when this copy may send it now.
    pub(crate) async fn claim(&self, job_id: &str, holder: &str) -> Result<bool, LedgerError> {
        let mut url = self.url(&["ledger", job_id, "claim"])?;
        url.query_pairs_mut().append_pair("holder", holder);
        let answer: ClaimAnswer = self.call(self.http.post(url)).await?;
        Ok(answer.granted)
    }

    fn url(&self, segments: &[&str]) -> Result<Url, LedgerError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| LedgerError::Body("base URL cannot take a path".to_owned()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends `request` with the token and reads a JSON answer.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<T, LedgerError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|error| LedgerError::Unreachable(error.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(LedgerError::Status(status.as_u16()));
        }
        response
            .json()
            .await
            .map_err(|error| LedgerError::Body(error.without_url().to_string()))
    }
}

#[derive(Deserialize)]
struct ClaimAnswer {
    granted: bool,
}

/// A `dead` result does not settle a job: a replayed dead job is meant to be sent.
fn entry(answer: Answer) -> Entry {
    match (answer.result, answer.echo) {
        (Some(result), _) if result.status != "dead" => Entry::Settled,
        (_, Some(echo)) => Entry::Echoed(echo.message_id),
        _ if answer.current => Entry::Unknown,
        _ => Entry::Behind,
    }
}

fn base_url(url: &str) -> Option<Url> {
    let url = Url::parse(url.trim()).ok()?;
    (matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base()).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Entry {
        entry(serde_json::from_str(json).expect("answer"))
    }

    #[test]
    fn a_result_settles_an_echo_sends_and_dead_does_neither() {
        let sent = r#"{"status":"sent","message_id":"m.1"}"#;
        let dead = r#"{"status":"dead","message_id":null}"#;
        let echo = r#"{"page_id":"1","message_id":"m.2","echoed_at":"2026-01-01T00:00:00Z"}"#;
        let check = |result: Option<&str>, echo: Option<&str>, expected: Entry| {
            let json = format!(
                r#"{{"job_id":"r:u","result":{},"echo":{},"settled":true}}"#,
                result.unwrap_or("null"),
                echo.unwrap_or("null")
            );
            assert_eq!(parse(&json), expected, "{json}");
        };
        check(Some(sent), None, Entry::Settled);
        check(Some(sent), Some(echo), Entry::Settled);
        check(None, Some(echo), Entry::Echoed(Some("m.2".into())));
        check(Some(dead), Some(echo), Entry::Echoed(Some("m.2".into())));
        check(Some(dead), None, Entry::Unknown);
        check(None, None, Entry::Unknown);
    }

    #[test]
    fn nothing_recorded_while_records_are_on_their_way_is_behind() {
        let behind =
            r#"{"job_id":"r:u","result":null,"echo":null,"settled":false,"current":false}"#;
        assert_eq!(parse(behind), Entry::Behind);
        let echoed = r#"{"job_id":"r:u","result":null,"settled":true,"current":false,
            "echo":{"page_id":"1","message_id":"m.2","echoed_at":"2026-01-01T00:00:00Z"}}"#;
        assert_eq!(parse(echoed), Entry::Echoed(Some("m.2".into())));
    }

    #[test]
    fn only_absolute_http_urls_are_ledgers() {
        assert!(
            LedgerSettings::new("http://serve:8080", None)
                .problems()
                .is_empty()
        );
        assert!(
            LedgerSettings::new("https://h/api/", None)
                .problems()
                .is_empty()
        );
        assert_eq!(LedgerSettings::new("serve:8080", None).problems().len(), 1);
        assert_eq!(LedgerSettings::new("ftp://h", None).problems().len(), 1);
    }
}
