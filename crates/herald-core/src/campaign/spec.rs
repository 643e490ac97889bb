//! The value types of a campaign document (`MessagingType`, `MessageTag`, `Segment`,
//! `Delivery`, ...) and their spelling in files. Reading them out of a document, with every
//! problem reported, is `validate`'s job; this file only names things.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cron::Cron;
use crate::duration::format_duration;
use crate::filter::{Filter, FilterGroup, Match, Op};
use crate::local::{LocalTime, QuietHours};
use time::OffsetDateTime;

/// The Send API `messaging_type` (docs/messenger-platform.md §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessagingType {
    /// A reply inside the standard 24-hour window.
    Response,
    /// A proactive message inside the standard 24-hour window (may be promotional).
    Update,
    /// Outside the window with a `tag`: non-promotional only.
    MessageTag,
    /// A utility template message (docs/messenger-platform.md §1.6).
    Utility,
}

/// A message tag Meta still accepts (docs/messenger-platform.md §1.4). Retired tags never parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageTag {
    /// A person replying by hand, up to 7 days after the user's message; needs the Human Agent
    /// feature approved in App Review; automated messages are not allowed with it.
    HumanAgent,
    /// Only with the Customer Feedback template, within 7 days of the user's last message.
    /// Whether Meta still offers it is unsettled (docs/messenger-platform.md §1.4): it
    /// is accepted here so that Graph, not Herald, has the last word.
    CustomerFeedback,
}

/// The Send API `notification_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationType {
    /// Sound or vibration (Graph's default).
    Regular,
    /// On-screen only.
    SilentPush,
    /// No notification.
    NoPush,
}

/// Where the users come from and which of them are in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Segment {
    /// The source of users.
    pub source: SegmentSource,
    /// `match` and `filter`: an empty group takes every user.
    pub filter: FilterGroup,
}

/// The source of a segment's users.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SegmentSource {
    /// `file = "users.csv"`: a CSV or JSONL file, relative to the campaign file.
    File(String),
    /// `source = "store"`: the store's users for the campaign's page.
    Store,
    /// Neither: the command line must supply one (`--segment FILE`).
    #[default]
    Unset,
}

/// How the campaign is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// This campaign's ceiling for its page, messages per second (1 or more; default 250).
    pub rate_per_sec: u32,
    /// Graph calls a job may make before it is dead-lettered (1..=20; default 5).
    pub max_attempts: u32,
    /// A job not sent this long after it was enqueued becomes `expired` (default 24 h).
    pub expires_after: Duration,
    /// The 24-hour window policy for RESPONSE/UPDATE (default `Enforce`).
    pub window: WindowPolicy,
    /// `priority = "high" | "normal"` as written; unset, it follows the messaging type
    /// (`Campaign::priority`).
    pub priority: Option<Priority>,
    /// `quiet_hours = { start, end }` in the user's local time: a job due inside them waits
    /// until they end.
    pub quiet_hours: Option<QuietHours>,
    /// `frequency_cap = { max, per }`: a user who got `max` messages from the page in the last
    /// `per` (any campaign) is skipped.
    pub frequency_cap: Option<FrequencyCap>,
}

/// At most `max` messages from the page to one user in any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    /// 1 or more.
    pub max: u32,
    /// The rolling period.
    pub per: Duration,
}

/// When the campaign starts (`send_at`, or every `cron` occurrence on the clock of
/// `timezone`), when each user's job is due (`local_time`), and in which zone each user lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `send_at = "<RFC 3339>"`: one run, started then by `herald serve`.
    pub send_at: Option<OffsetDateTime>,
    /// `cron = "0 10 * * MON"`: a run per occurrence, started by `herald serve`.
    pub cron: Option<Cron>,
    /// The IANA zone the `cron` expression is read in (default `UTC`).
    pub timezone: String,
    /// `local_time = "HH:MM"`: each user's job is due at their next such time; unset, at once.
    pub local_time: Option<LocalTime>,
    /// The user attribute that holds their IANA time zone (default `time_zone`, Braze's name).
    pub timezone_attribute: String,
    /// The zone of users whose attribute is missing or not a zone (default `UTC`).
    pub default_timezone: String,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            send_at: None,
            cron: None,
            timezone: "UTC".to_owned(),
            local_time: None,
            timezone_attribute: "time_zone".to_owned(),
            default_timezone: "UTC".to_owned(),
        }
    }
}

/// Which lane a campaign's jobs take: a page's limiter serves pending `High` jobs before
/// `Normal` ones, within the same page limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Bulk sends: the default for `UPDATE` and `MESSAGE_TAG` campaigns.
    #[default]
    Normal,
    /// Urgent sends: the default for `RESPONSE` and `UTILITY` campaigns, which answer
    /// something the person did or is waiting for.
    High,
}

/// What to do with users known to be outside the 24-hour window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowPolicy {
    /// Skip them (`outside_window`) instead of letting Graph refuse them.
    #[default]
    Enforce,
    /// Send anyway (Graph answers 10/2018278 and the user is dropped).
    Off,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            rate_per_sec: 250,
            max_attempts: 5,
            expires_after: Duration::from_secs(24 * 3600),
            window: WindowPolicy::Enforce,
            priority: None,
            quiet_hours: None,
            frequency_cap: None,
        }
    }
}

/// Spellings in files, for parsing and printing.
pub(crate) const MESSAGING_TYPES: [(&str, MessagingType); 4] = [
    ("RESPONSE", MessagingType::Response),
    ("UPDATE", MessagingType::Update),
    ("MESSAGE_TAG", MessagingType::MessageTag),
    ("UTILITY", MessagingType::Utility),
];
pub(crate) const TAGS: [(&str, MessageTag); 2] = [
    ("HUMAN_AGENT", MessageTag::HumanAgent),
    ("CUSTOMER_FEEDBACK", MessageTag::CustomerFeedback),
];
pub(crate) const NOTIFICATION_TYPES: [(&str, NotificationType); 3] = [
    ("REGULAR", NotificationType::Regular),
    ("SILENT_PUSH", NotificationType::SilentPush),
    ("NO_PUSH", NotificationType::NoPush),
];
pub(crate) const MATCHES: [(&str, Match); 2] = [("all", Match::All), ("any", Match::Any)];
pub(crate) const PRIORITIES: [(&str, Priority); 2] =
    [("normal", Priority::Normal), ("high", Priority::High)];
pub(crate) const WINDOWS: [(&str, WindowPolicy); 2] = [
    ("enforce", WindowPolicy::Enforce),
    ("off", WindowPolicy::Off),
];

fn name_of<T: PartialEq + Copy>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("", |(name, _)| name)
}

impl MessagingType {
    /// As Graph spells it (`UPDATE`).
    pub fn as_str(self) -> &'static str {
        name_of(&MESSAGING_TYPES, self)
    }
}

impl MessageTag {
    /// As Graph spells it (`HUMAN_AGENT`).
    pub fn as_str(self) -> &'static str {
        name_of(&TAGS, self)
    }
}

impl NotificationType {
    /// As Graph spells it (`SILENT_PUSH`).
    pub fn as_str(self) -> &'static str {
        name_of(&NOTIFICATION_TYPES, self)
    }
}

impl WindowPolicy {
    /// As campaign files spell it (`enforce`).
    pub fn as_str(self) -> &'static str {
        name_of(&WINDOWS, self)
    }
}

impl Priority {
    /// As campaign files spell it (`high`).
    pub fn as_str(self) -> &'static str {
        name_of(&PRIORITIES, self)
    }

    /// The priority a campaign of this messaging type gets when its file names none.
    pub fn default_for(messaging_type: MessagingType) -> Self {
        match messaging_type {
            MessagingType::Response | MessagingType::Utility => Self::High,
            MessagingType::Update | MessagingType::MessageTag => Self::Normal,
        }
    }
}

pub(crate) fn match_name(matching: Match) -> &'static str {
    name_of(&MATCHES, matching)
}

impl Segment {
    /// The `segment` table as JSON, in the campaign document's shape.
    pub(crate) fn to_json(&self) -> Value {
        let mut out = group_json(&self.filter);
        match &self.source {
            SegmentSource::File(file) => out["file"] = json!(file),
            SegmentSource::Store => out["source"] = json!("store"),
            SegmentSource::Unset => {}
        }
        out
    }
}

impl Delivery {
    /// The `delivery` table as JSON, in the campaign document's shape.
    pub(crate) fn to_json(self) -> Value {
        let mut out = json!({
            "rate_per_sec": self.rate_per_sec,
            "max_attempts": self.max_attempts,
            "expires_after": format_duration(self.expires_after),
            "window": self.window.as_str(),
        });
        // Written only when the file names one: unset means "by messaging type".
        if let Some(priority) = self.priority {
            out["priority"] = json!(priority.as_str());
        }
        if let Some(cap) = self.frequency_cap {
            out["frequency_cap"] = json!({ "max": cap.max, "per": format_duration(cap.per) });
        }
        if let Some(quiet) = self.quiet_hours {
            out["quiet_hours"] = json!({
                "start": quiet.start.to_string(),
                "end": quiet.end.to_string(),
            });
        }
        out
    }
}

impl Schedule {
    /// The `schedule` table as JSON, in the campaign document's shape.
    pub(crate) fn to_json(&self) -> Value {
        let mut out = json!({
            "timezone_attribute": self.timezone_attribute,
            "default_timezone": self.default_timezone,
            "timezone": self.timezone,
        });
        if let Some(at) = self.local_time {
            out["local_time"] = json!(at.to_string());
        }
        if let Some(at) = self.send_at {
            out["send_at"] = json!(
                at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            );
        }
        if let Some(cron) = &self.cron {
            out["cron"] = json!(cron.as_str());
        }
        out
    }

    /// Whether the campaign starts later (`send_at`) or repeatedly (`cron`), through
    /// `herald serve`, rather than at once.
    pub fn starts_later(&self) -> bool {
        self.send_at.is_some() || self.cron.is_some()
    }

    /// The campaign's first start strictly after `after`: `send_at` if it is later, else the
    /// next `cron` occurrence. `None` when neither is (still) ahead.
    pub fn next_start(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        if let Some(at) = self.send_at {
            return (at > after).then_some(at);
        }
        let zone = crate::local::zone(&self.timezone)?;
        self.cron.as_ref()?.next_after(after, &zone)
    }
}

fn group_json(group: &FilterGroup) -> Value {
    let filters: Vec<Value> = group.filters.iter().map(filter_json).collect();
    json!({ "match": match_name(group.matching), "filter": filters })
}

fn filter_json(filter: &Filter) -> Value {
    let condition = match filter {
        Filter::Group(group) => return json!({ "group": group_json(group) }),
        Filter::Condition(condition) => condition,
    };
    let (op, value) = match &condition.op {
        Op::Exists => ("exists", None),
        Op::Blank => ("blank", None),
        Op::Eq(v) => ("eq", Some(json!(v.as_str()))),
        Op::Neq(v) => ("neq", Some(json!(v.as_str()))),
        Op::In(list) => ("in", Some(list.iter().map(|v| v.as_str()).collect())),
        Op::Contains(v) => ("contains", Some(json!(v))),
        Op::Gt(v) => ("gt", Some(json!(v.as_str()))),
        Op::Gte(v) => ("gte", Some(json!(v.as_str()))),
        Op::Lt(v) => ("lt", Some(json!(v.as_str()))),
        Op::Lte(v) => ("lte", Some(json!(v.as_str()))),
        Op::Within(d) => ("within", Some(json!(format_duration(*d)))),
        Op::OlderThan(d) => ("older_than", Some(json!(format_duration(*d)))),
    };
    let mut out = json!({ "attribute": condition.attribute.name(), "op": op });
    if let Some(value) = value {
        out["value"] = value;
    }
    out
}
