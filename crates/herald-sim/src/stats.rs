//! The simulator's mutable state behind one mutex: per-page windows, per-recipient counts and
//! recorded bodies, rejection counters, `fail_first` memory, webhook counters. `admit` is the single
//! short critical section of a Send API call. The public `Stats` and `AcceptedMessage` snapshots
//! are built here; the HTTP shapes of `/_sim/*` are in `admin.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::config::PsidOutcome;
use crate::graph_error::GraphError;
use crate::limits::PageWindow;

/// Counters and accounting, as served by `GET /_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Send API calls answered with success.
    pub accepted: u64,
    /// Error answers by Graph `code` (5xx answers with a body included).
    pub rejected: BTreeMap<u32, u64>,
    /// HTTP 5xx answers, with or without a body.
    pub server_errors: u64,
    /// Calls held open and dropped unanswered.
    pub timeouts: u64,
    /// Calls accepted (and counted in `accepted`) whose answer was then lost on purpose.
    #[serde(default)]
    pub lost_answers: u64,
    /// Accepted calls per recipient; omitted with `?summary=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<BTreeMap<String, u64>>,
    /// Recipients accepted more than once.
    pub duplicate_recipients: Duplicates,
    /// Accepted calls per page.
    pub accepted_by_page: BTreeMap<String, u64>,
    /// Per page, the highest number of calls accepted in any 1000 ms span.
    pub max_per_second: BTreeMap<String, u32>,
    /// Accepted calls whose body was not kept (`record_bodies = false` or over `max_recorded`).
    pub unrecorded: u64,
    /// Outgoing webhook POSTs.
    pub webhook: WebhookStats,
}

/// Recipients accepted more than once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicates {
    /// How many recipients.
    pub count: u64,
    /// Which ones, sorted.
    pub psids: Vec<String>,
}

/// Outgoing webhook POST counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookStats {
    /// POSTs answered 2xx.
    pub posts_ok: u64,
    /// Attempts answered non-2xx or failed in transport (each retry counts).
    pub posts_failed: u64,
    /// Batches given up after the last retry.
    pub posts_dropped: u64,
    /// Messaging events delivered in 2xx-answered POSTs.
    pub events_sent: u64,
    /// Events not queued because the queue was full or no webhook URL was set.
    pub events_dropped: u64,
}

/// One accepted Send API call, as served by `GET /_sim/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedMessage {
    /// The page the call was for.
    pub page_id: String,
    /// The recipient key (the PSID for `recipient.id`).
    pub recipient: String,
    /// The `message_id` answered (absent for `sender_action` calls).
    pub message_id: Option<String>,
    /// When it was accepted, RFC 3339.
    pub accepted_at: String,
    /// When it was accepted, Unix milliseconds.
    pub accepted_at_ms: i64,
    /// The request body as JSON (form bodies converted).
    pub body: serde_json::Value,
}

/// Everything `admit` needs to decide one call.
pub(crate) struct Admission<'a> {
    pub(crate) page: &'a str,
    pub(crate) recipient: &'a str,
    pub(crate) rate: u32,
    /// The page's call budget and its window.
    pub(crate) budget: (u64, Duration),
    /// `estimated_time_to_regain_access` of a scripted burst.
    pub(crate) burst_regain_minutes: u32,
    pub(crate) outcome: Option<&'a PsidOutcome>,
    pub(crate) start_burst: Option<Duration>,
    pub(crate) sender_action: bool,
    pub(crate) body: Option<&'a [u8]>,
    pub(crate) max_recorded: usize,
    pub(crate) now: Instant,
    pub(crate) wall_ms: i64,
}

/// The verdict of `admit`, with the share of the page's call budget used (percent) for the
/// headers.
pub(crate) enum Decision {
    Accepted {
        page: Arc<str>,
        mid: Option<u64>,
        usage_pct: u32,
    },
    Rejected {
        error: GraphError,
        usage_pct: u32,
        /// `estimated_time_to_regain_access` in minutes.
        regain_minutes: u32,
    },
}

/// The mutable state.
#[derive(Default)]
pub(crate) struct State {
    pages: HashMap<Box<str>, PageWindow>,
    recipients: HashMap<Box<str>, RecipientLog>,
    failed_once: HashSet<Box<str>>,
    accepted: u64,
    rejected: BTreeMap<u32, u64>,
    server_errors: u64,
    timeouts: u64,
    lost_answers: u64,
    /// Accepted calls in accept order; each recipient's form a list through `previous`.
    records: Vec<Record>,
    /// Bodies are copied back to back into shared chunks: one allocation per chunk, not per call,
    /// and no record pins one of hyper's read buffers.
    arena: BytesMut,
    unrecorded: u64,
    next_mid: u64,
    pub(crate) webhook: WebhookStats,
}

struct RecipientLog {
    count: u64,
    /// Index of the recipient's newest record, `NONE` if none was kept.
    last: u32,
}

struct Record {
    page: Arc<str>,
    mid: Option<u64>,
    at_ms: i64,
    body: Bytes,
    /// Index of the same recipient's previous record, `NONE` for the first.
    previous: u32,
}

const NONE: u32 = u32::MAX;
const ARENA_CHUNK: usize = 64 * 1024;

impl State {
    /// The one critical section of a Send API call: burst, rate limit, scripted outcome, accept.
    pub(crate) fn admit(&mut self, a: Admission<'_>) -> Decision {
        if !self.pages.contains_key(a.page) {
            self.pages.insert(a.page.into(), PageWindow::new(a.page));
        }
        let page = self.pages.get_mut(a.page).expect("inserted above");
        let (allowance, window) = a.budget;
        page.note_call(a.now, window);
        let usage_pct = page.budget.percent(allowance);
        // Throttled, and for how many minutes: a scripted burst, the budget spent (its calls
        // count on, so calling while throttled puts the end off), the per-second limit.
        let throttle = if page.in_burst(a.now, a.start_burst) {
            Some((usage_pct.max(100), a.burst_regain_minutes))
        } else if page.budget.used() > allowance {
            let regain = page.budget.regain_minutes(a.now, window, allowance);
            Some((usage_pct, regain))
        } else if !page.has_room(a.rate) {
            Some((usage_pct, 0))
        } else {
            None
        };
        let (error, usage_pct, regain_minutes) = match throttle {
            Some((pct, regain)) => (Some(GraphError::rate_limited()), pct, regain),
            None => {
                let error = match a.outcome {
                    Some(PsidOutcome::FailFirst) if !self.failed_once.contains(a.recipient) => {
                        self.failed_once.insert(a.recipient.into());
                        Some(GraphError::transient())
                    }
                    Some(outcome) => GraphError::for_outcome(outcome),
                    None => None,
                };
                (error, usage_pct, 0)
            }
        };
        if let Some(error) = error {
            *self.rejected.entry(error.code).or_default() += 1;
            return Decision::Rejected {
                error,
                usage_pct,
                regain_minutes,
            };
        }
        page.accept(a.now);
        let page_id = Arc::clone(&page.id);
        self.accepted += 1;
        let mid = (!a.sender_action).then(|| {
            self.next_mid += 1;
            self.next_mid
        });
        let log = match self.recipients.get_mut(a.recipient) {
            Some(log) => log,
            None => self
                .recipients
                .entry(a.recipient.into())
                .or_insert(RecipientLog {
                    count: 0,
                    last: NONE,
                }),
        };
        log.count += 1;
        let index = u32::try_from(self.records.len()).unwrap_or(NONE);
        match a.body {
            Some(body) if self.records.len() < a.max_recorded.min(NONE as usize) => {
                if self.arena.capacity() - self.arena.len() < body.len() {
                    self.arena = BytesMut::with_capacity(ARENA_CHUNK.max(body.len()));
                }
                self.arena.extend_from_slice(body);
                self.records.push(Record {
                    page: Arc::clone(&page_id),
                    mid,
                    at_ms: a.wall_ms,
                    body: self.arena.split().freeze(),
                    previous: log.last,
                });
                log.last = index;
            }
            _ => self.unrecorded += 1,
        }
        Decision::Accepted {
            page: page_id,
            mid,
            usage_pct,
        }
    }

    /// Counts an error answered before `admit` (auth, validation, scripted faults).
    pub(crate) fn count_rejection(&mut self, error: &GraphError) {
        *self.rejected.entry(error.code).or_default() += 1;
        if error.status.is_server_error() {
            self.server_errors += 1;
        }
    }

    pub(crate) fn count_empty_server_error(&mut self) {
        self.server_errors += 1;
    }

    pub(crate) fn count_timeout(&mut self) {
        self.timeouts += 1;
    }

    pub(crate) fn count_lost_answer(&mut self) {
        self.lost_answers += 1;
    }

    /// Hands out a message id outside `admit` (inbound webhook messages).
    pub(crate) fn next_mid(&mut self) -> u64 {
        self.next_mid += 1;
        self.next_mid
    }

    /// Clears everything but the message-id sequence (ids stay unique across resets).
    pub(crate) fn reset(&mut self) {
        let next_mid = self.next_mid;
        *self = Self {
            next_mid,
            ..Self::default()
        };
    }

    pub(crate) fn snapshot(&self, with_recipients: bool) -> Stats {
        let mut duplicates: Vec<String> = self
            .recipients
            .iter()
            .filter(|(_, log)| log.count > 1)
            .map(|(psid, _)| psid.to_string())
            .collect();
        duplicates.sort_unstable();
        Stats {
            accepted: self.accepted,
            rejected: self.rejected.clone(),
            server_errors: self.server_errors,
            timeouts: self.timeouts,
            lost_answers: self.lost_answers,
            recipients: with_recipients.then(|| {
                self.recipients
                    .iter()
                    .map(|(psid, log)| (psid.to_string(), log.count))
                    .collect()
            }),
            duplicate_recipients: Duplicates {
                count: duplicates.len() as u64,
                psids: duplicates,
            },
            accepted_by_page: self
                .pages
                .iter()
                .map(|(id, p)| (id.to_string(), p.accepted))
                .collect(),
            max_per_second: self
                .pages
                .iter()
                .map(|(id, p)| (id.to_string(), p.max_per_second))
                .collect(),
            unrecorded: self.unrecorded,
            webhook: self.webhook,
        }
    }

    /// Recorded calls for one recipient, or for all when `recipient` is `None`, oldest first.
    pub(crate) fn messages(&self, recipient: Option<&str>, instance: u32) -> Vec<AcceptedMessage> {
        let logs: Vec<(&str, &RecipientLog)> = match recipient {
            Some(key) => self
                .recipients
                .get_key_value(key)
                .map(|(k, l)| (&**k, l))
                .into_iter()
                .collect(),
            None => self.recipients.iter().map(|(k, l)| (&**k, l)).collect(),
        };
        let mut out: Vec<AcceptedMessage> = logs
            .into_iter()
            .flat_map(|(key, log)| {
                let mut index = log.last;
                std::iter::from_fn(move || {
                    let record = self.records.get(index as usize)?;
                    index = record.previous;
                    Some((key, record))
                })
            })
            .map(|(key, record)| AcceptedMessage {
                page_id: record.page.to_string(),
                recipient: key.to_owned(),
                message_id: record.mid.map(|n| message_id(instance, n)),
                accepted_at: rfc3339(record.at_ms),
                accepted_at_ms: record.at_ms,
                body: serde_json::from_slice(&record.body).unwrap_or(serde_json::Value::Null),
            })
            .collect();
        out.sort_by(|a, b| {
            (a.accepted_at_ms, &a.message_id).cmp(&(b.accepted_at_ms, &b.message_id))
        });
        out
    }
}

/// `m_` + the simulator instance + a sequence number: unique, opaque, like Meta's `m_…` ids.
pub(crate) fn message_id(instance: u32, n: u64) -> String {
    format!("m_{instance:08x}{n:012x}")
}

fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
