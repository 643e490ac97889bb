//! `Campaign`: a campaign document (TOML file, or the same document as JSON over the API),
//! validated and compiled (ARCHITECTURE.md, "The campaign file"). Parsing works on the text the
//! caller read; this module never touches the file system. Problems are listed all at once
//! (`CampaignErrors`), with the exit code the CLI should use.
//!
//! A campaign is immutable once built: its message is compiled into a `render` template, so
//! the only change allowed afterwards is the segment source (`--segment FILE`).

mod check;
mod doc;
mod problem;
mod schedule;
mod segment;
mod spec;
mod tags;
mod trigger;
mod validate;

use std::sync::Arc;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::render::RequestTemplate;
use crate::skip::SkipReason;
use crate::user::User;

/// The smallest campaign file every version must accept (ARCHITECTURE.md, "The campaign
/// file"): the example for documentation, tests, benchmarks and the demo.
pub const EXAMPLE_TOML: &str = include_str!("example.toml");

pub use problem::{CampaignErrors, EXIT_DATA, EXIT_USAGE, Problem, ProblemKind};
pub use spec::{
    Delivery, FrequencyCap, MessageTag, MessagingType, NotificationType, Priority, Schedule,
    Segment, SegmentSource, WindowPolicy,
};

pub use trigger::{
    MAX_TRIGGER_DELAY, SENT_BY_TRIGGER, TRIGGER_KINDS, Trigger, TriggerKind, has_keyword,
};

use doc::{LineIndex, Node};

/// A validated campaign, ready to render one Send API body per user.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub(crate) id: String,
    pub(crate) page_id: String,
    pub(crate) messaging_type: MessagingType,
    pub(crate) tag: Option<MessageTag>,
    pub(crate) notification_type: Option<NotificationType>,
    pub(crate) message: Value,
    pub(crate) segment: Segment,
    pub(crate) delivery: Delivery,
    pub(crate) schedule: Schedule,
    /// `[trigger]`: sent by `herald serve` when a person does something, not by a run.
    pub(crate) trigger: Option<Trigger>,
    /// The compiled body; shared so clones (one per producer task) are cheap.
    pub(crate) request: Arc<RequestTemplate>,
}

impl Campaign {
    /// Parses and validates a TOML campaign file's text. Problems carry line:column.
    pub fn from_toml(source: &str) -> Result<Self, CampaignErrors> {
        let lines = LineIndex::new(source);
        let root = Node::from_toml(source).map_err(|errors| {
            let problems = errors
                .into_iter()
                .map(|error| Problem {
                    path: String::new(),
                    line_col: error.span.map(|span| lines.line_col(span.start)),
                    message: error.message,
                    kind: ProblemKind::Usage,
                })
                .collect();
            CampaignErrors::new(problems)
        })?;
        validate::build(&root, Some(&lines))
    }

    /// Parses and validates the same document as JSON (the admin API). Only syntax errors
    /// carry line:column.
    pub fn from_json(source: &str) -> Result<Self, CampaignErrors> {
        let root = Node::from_json(source).map_err(|error| {
            CampaignErrors::new(vec![Problem {
                path: String::new(),
                line_col: error.line_col,
                message: error.message,
                kind: ProblemKind::Usage,
            }])
        })?;
        validate::build(&root, None)
    }

    /// The document as JSON, in the shape `from_json` reads (defaults written out,
    /// durations in canonical form, filter values as strings).
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "id": self.id,
            "page_id": self.page_id,
            "messaging_type": self.messaging_type.as_str(),
            "message": self.message,
            "segment": self.segment.to_json(),
            "delivery": self.delivery.to_json(),
        });
        if self.schedule != Schedule::default() {
            out["schedule"] = self.schedule.to_json();
        }
        if let Some(trigger) = &self.trigger {
            out["trigger"] = trigger.to_json();
        }
        if let Some(tag) = self.tag {
            out["tag"] = json!(tag.as_str());
        }
        if let Some(notification_type) = self.notification_type {
            out["notification_type"] = json!(notification_type.as_str());
        }
        out
    }

    /// The campaign id (`[a-z0-9_-]`, at most 64 characters).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The sending Facebook Page, digits.
    pub fn page_id(&self) -> &str {
        &self.page_id
    }

    /// The Send API `messaging_type`.
    pub fn messaging_type(&self) -> MessagingType {
        self.messaging_type
    }

    /// The message tag, only with `MessagingType::MessageTag`.
    pub fn tag(&self) -> Option<MessageTag> {
        self.tag
    }

    /// The Send API `notification_type`, when the file sets one.
    pub fn notification_type(&self) -> Option<NotificationType> {
        self.notification_type
    }

    /// The `message` object as written (Liquid not rendered, no metadata).
    pub fn message(&self) -> &Value {
        &self.message
    }

    /// Where the users come from and the filters.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Rate, attempts, expiry and window policy.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The lane its jobs take: `delivery.priority` when the file sets it, else by messaging
    /// type (`Priority::default_for`).
    pub fn priority(&self) -> Priority {
        self.delivery
            .priority
            .unwrap_or_else(|| Priority::default_for(self.messaging_type))
    }

    /// When each user's job is due and where the user's time zone comes from.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// `[trigger]`, for a campaign sent when a person acts rather than by a run.
    pub fn trigger(&self) -> Option<&Trigger> {
        self.trigger.as_ref()
    }

    /// The user's IANA time zone: the `timezone_attribute` when it names a zone, else the
    /// `default_timezone`. Its name and the zone.
    pub fn user_zone(&self, user: &User) -> (String, jiff::tz::TimeZone) {
        let attribute = user.attributes.get(&self.schedule.timezone_attribute);
        if let Some(name) = attribute
            && let Some(zone) = crate::local::zone(name)
        {
            return (name.trim().to_owned(), zone);
        }
        let name = &self.schedule.default_timezone;
        let zone = crate::local::zone(name).unwrap_or(jiff::tz::TimeZone::UTC);
        (name.clone(), zone)
    }

    /// The same campaign in the lane `priority`, whatever its file says (API-triggered sends
    /// take the priority lane).
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.delivery.priority = Some(priority);
        self
    }

    /// Replaces the segment's source with a file (`--segment FILE` overrides `segment.file`).
    pub fn set_segment_file(&mut self, path: impl Into<String>) {
        self.segment.source = SegmentSource::File(path.into());
    }

    /// Whether the user passes the segment's filters at `now`. A user who does not is not
    /// "considered" and gets no result.
    pub fn matches(&self, user: &User, now: OffsetDateTime) -> bool {
        self.segment.filter.matches(user, now)
    }

    /// The exact Send API body for one user, compact JSON:
    /// `{"recipient":{"id":PSID},"messaging_type":..,"tag"?:..,"notification_type"?:..,
    /// "message":{..rendered..,"metadata":JOB_ID}}`. A user with a blank PSID, whose render
    /// fails, or whose rendered message breaks Meta's limits is skipped with the reason.
    pub fn render_request(&self, user: &User, job_id: &str) -> Result<Vec<u8>, SkipReason> {
        self.request.render(user, job_id)
    }
}

impl PartialEq for Campaign {
    /// Equal documents; the compiled template follows from them.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.page_id == other.page_id
            && self.messaging_type == other.messaging_type
            && self.tag == other.tag
            && self.notification_type == other.notification_type
            && self.message == other.message
            && self.segment == other.segment
            && self.delivery == other.delivery
            && self.schedule == other.schedule
            && self.trigger == other.trigger
    }
}

#[cfg(test)]
mod tests;
