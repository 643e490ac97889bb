//! Reading a whole campaign out of a `Node` tree: every field, every rule, every problem at
//! once. Filters are read by `segment`; this file owns the top level, `message` (Liquid
//! syntax, Meta's limits on a sample render) and `delivery`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::Campaign;
use super::check::Checker;
use super::doc::{LineIndex, Node, NodeValue};
use super::problem::{CampaignErrors, ProblemKind};
use super::spec::{
    Delivery, MESSAGING_TYPES, MessageTag, MessagingType, NOTIFICATION_TYPES, PRIORITIES, WINDOWS,
};
use super::{schedule, segment, tags, trigger};
use crate::duration::parse_duration;
use crate::limits::{self, check_message_limits};
use crate::path::FieldPath;
use crate::render::{self, Header, RequestTemplate};
use crate::user::User;

const TOP_KEYS: [&str; 10] = [
    "id",
    "page_id",
    "messaging_type",
    "tag",
    "notification_type",
    "message",
    "segment",
    "delivery",
    "schedule",
    "trigger",
];
const DELIVERY_KEYS: [&str; 7] = [
    "rate_per_sec",
    "max_attempts",
    "expires_after",
    "window",
    "priority",
    "quiet_hours",
    "frequency_cap",
];
const MAX_ID_LEN: usize = 64;
const SAMPLE_JOB_ID: &str = "sample-run:sample-user";

/// Builds a campaign from a parsed document, or lists everything wrong with it.
pub(crate) fn build(
    root: &Node,
    lines: Option<&LineIndex<'_>>,
) -> Result<Campaign, CampaignErrors> {
    let mut checker = Checker::new(lines);
    let campaign = read(&mut checker, root, lines);
    match campaign {
        Some(campaign) if checker.problems.is_empty() => Ok(campaign),
        _ => Err(CampaignErrors::new(checker.problems)),
    }
}

fn read(checker: &mut Checker<'_>, root: &Node, lines: Option<&LineIndex<'_>>) -> Option<Campaign> {
    let mut top = checker.table(root, FieldPath::root())?;
    let id = top
        .required(checker, "id")
        .and_then(|n| check_id(checker, n, &top.at("id")));
    let page_id = top
        .required(checker, "page_id")
        .and_then(|n| check_page_id(checker, n, &top.at("page_id")));
    let messaging_node = top.required(checker, "messaging_type");
    let messaging_type =
        messaging_node.and_then(|n| checker.choice(n, &top.at("messaging_type"), &MESSAGING_TYPES));
    let tag_node = top.get("tag");
    let tag = tag_node.and_then(|n| check_tag(checker, n, &top.at("tag")));
    match (messaging_type, tag_node, messaging_node) {
        (Some(MessagingType::MessageTag), None, Some(node)) => {
            let message = "messaging_type = \"MESSAGE_TAG\" needs a `tag` (HUMAN_AGENT)";
            checker.data(&top.at("tag"), node, message);
        }
        (Some(kind), Some(node), _) if kind != MessagingType::MessageTag => {
            let message = format!(
                "a tag is only allowed with messaging_type = \"MESSAGE_TAG\", not {}",
                kind.as_str()
            );
            checker.data(&top.at("tag"), node, message);
        }
        _ => {}
    }
    // `Some(None)`: present but wrong (reported); `None`: absent.
    let notification_type = top
        .get("notification_type")
        .map(|n| checker.choice(n, &top.at("notification_type"), &NOTIFICATION_TYPES));
    let message_node = top.required(checker, "message");
    let message = message_node.and_then(|n| check_message(checker, n, &top.at("message")));
    let segment = segment::segment(checker, top.get("segment"));
    let delivery = top
        .get("delivery")
        .map_or(Some(Delivery::default()), |n| delivery(checker, n));
    let schedule = schedule::schedule(checker, top.get("schedule"));
    let trigger = trigger::trigger(checker, top.get("trigger"));
    if let (Some(Some(_)), Some(schedule), Some(node)) = (&trigger, &schedule, top.get("trigger"))
        && schedule.starts_later()
    {
        let message = "a campaign with a `[trigger]` is sent when its event happens; \
                       `schedule.send_at` and `schedule.cron` do not apply to it";
        checker.data(&top.at("trigger"), node, message);
    }
    top.finish(checker, &TOP_KEYS);

    let (message, message_node) = (message?, message_node?);
    let header = Header {
        messaging_type: messaging_type.map_or("UPDATE", MessagingType::as_str),
        tag: tag.map(MessageTag::as_str),
        notification_type: notification_type.flatten().map(|t| t.as_str()),
    };
    let request = compile(checker, header, &message, message_node, lines.is_some())?;
    Some(Campaign {
        id: id?,
        page_id: page_id?,
        messaging_type: messaging_type?,
        tag,
        notification_type: match notification_type {
            Some(parsed) => Some(parsed?),
            None => None,
        },
        message,
        segment: segment?,
        delivery: delivery?,
        schedule: schedule?,
        trigger: trigger?,
        request: Arc::new(request),
    })
}

/// Compiles the message (Liquid syntax problems) and checks Meta's limits on a render for a
/// user without attributes, pointing problems back at the source when it has spans.
fn compile(
    checker: &mut Checker<'_>,
    header: Header<'_>,
    message: &serde_json::Value,
    message_node: &Node,
    has_spans: bool,
) -> Option<RequestTemplate> {
    let spans = SpanIndex::new(message_node, has_spans);
    let compiled = RequestTemplate::compile(header, message, &render::parser());
    let (sample, templates) = match &compiled {
        Ok(request) => {
            let user = User::new("sample-user", "0");
            let (sample, failures) = request.render_sample(&user, SAMPLE_JOB_ID);
            // Most render failures depend on the user's data; a missing partial fails for all.
            let partials = failures
                .iter()
                .filter(|f| f.message.contains("Partial does not exist"));
            for failure in partials {
                let message = "`{% include %}` and `{% render %}` are not supported: \
                               campaigns have no partials";
                let span = spans.find(failure.path.as_str());
                checker.report(ProblemKind::Data, &failure.path, span, message);
            }
            (
                sample,
                request.template_paths().map(str::to_owned).collect(),
            )
        }
        Err(errors) => {
            for error in errors {
                let span = spans.find(error.path.as_str());
                let message = error.message.clone();
                checker.report(ProblemKind::Data, &error.path, span, message);
            }
            (message.clone(), render::template_paths(message))
        }
    };
    // Limits on the sample render. A template that rendered empty for a user without
    // attributes says nothing about real users (and an uncompiled one says nothing at all);
    // everything else only grows with attributes, so it breaks the limits for everyone.
    let compiled_ok = compiled.is_ok();
    let violations = check_message_limits(&sample)
        .into_iter()
        .filter(|violation| {
            let templated = templates.contains(&violation.path);
            !(templated && (!compiled_ok || violation.message == limits::EMPTY))
        });
    for violation in violations {
        let path = FieldPath::from_printed(&violation.path);
        let message = format!(
            "{} (rendered for a user without attributes)",
            violation.message
        );
        checker.report(
            ProblemKind::Data,
            &path,
            spans.find(&violation.path),
            message,
        );
    }
    compiled.ok()
}

fn check_id(checker: &mut Checker<'_>, node: &Node, path: &FieldPath) -> Option<String> {
    let id = checker.string(node, path)?;
    let ok = (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        let message =
            format!("`{id}` is not a campaign id: use 1 to {MAX_ID_LEN} of a-z, 0-9, `_` and `-`");
        checker.data(path, node, message);
        return None;
    }
    Some(id.to_owned())
}

fn check_page_id(checker: &mut Checker<'_>, node: &Node, path: &FieldPath) -> Option<String> {
    if let NodeValue::Int(number) = node.value {
        let message = format!("expected a string, found an integer; write page_id = \"{number}\"");
        checker.usage(path, node, message);
        return None;
    }
    let page_id = checker.string(node, path)?;
    if page_id.is_empty() || !page_id.bytes().all(|b| b.is_ascii_digit()) {
        let message =
            format!("`{page_id}` is not a page id: use the page's numeric id, e.g. \"1000000001\"");
        checker.data(path, node, message);
        return None;
    }
    Some(page_id.to_owned())
}

fn check_tag(checker: &mut Checker<'_>, node: &Node, path: &FieldPath) -> Option<MessageTag> {
    let name = checker.string(node, path)?;
    match tags::parse_tag(name) {
        Ok(tag) => Some(tag),
        Err(message) => {
            checker.data(path, node, message);
            None
        }
    }
}

/// `message`: a non-empty table, converted to JSON. Herald owns `metadata`.
fn check_message(
    checker: &mut Checker<'_>,
    node: &Node,
    path: &FieldPath,
) -> Option<serde_json::Value> {
    let NodeValue::Table(entries) = &node.value else {
        let message = format!(
            "expected a table (a Send API message object), found {}",
            node.type_name()
        );
        checker.usage(path, node, message);
        return None;
    };
    if entries.is_empty() {
        checker.data(
            path,
            node,
            "the message is empty; give it `text` or an `attachment`",
        );
        return None;
    }
    // Reported, but the rest of the message is still compiled and checked.
    if let Some(entry) = entries.iter().find(|entry| entry.key == "metadata") {
        let message = "Herald sets message.metadata to the job id; remove it";
        checker.data(&path.key("metadata"), &entry.value, message);
    }
    match node.to_json() {
        Ok(json) => Some(json),
        Err(bad) => {
            checker.data(path, bad, "a float that JSON cannot represent (nan or inf)");
            None
        }
    }
}

fn delivery(checker: &mut Checker<'_>, node: &Node) -> Option<Delivery> {
    let mut fields = checker.table(node, FieldPath::root().key("delivery"))?;
    let defaults = Delivery::default();
    let mut bounded = |checker: &mut Checker<'_>, key: &str, min: i64, max: i64, default: u32| {
        let Some(node) = fields.get(key) else {
            return Some(default);
        };
        let path = fields.at(key);
        let value = checker.integer(node, &path)?;
        if !(min..=max).contains(&value) {
            let message = format!("must be between {min} and {max}, got {value}");
            checker.data(&path, node, message);
            return None;
        }
        u32::try_from(value).ok()
    };
    let rate_per_sec = bounded(
        checker,
        "rate_per_sec",
        1,
        i64::from(u32::MAX),
        defaults.rate_per_sec,
    );
    let max_attempts = bounded(checker, "max_attempts", 1, 20, defaults.max_attempts);
    let expires_after = match fields.get("expires_after") {
        None => Some(defaults.expires_after),
        Some(node) => {
            let path = fields.at("expires_after");
            checker
                .string(node, &path)
                .and_then(|text| match parse_duration(text) {
                    Ok(duration) if !duration.is_zero() => Some(duration),
                    Ok(_) => {
                        checker.data(&path, node, "must be longer than 0s");
                        None
                    }
                    Err(error) => {
                        checker.data(&path, node, error.to_string());
                        None
                    }
                })
        }
    };
    let window = fields.get("window").map_or(Some(defaults.window), |n| {
        checker.choice(n, &fields.at("window"), &WINDOWS)
    });
    let quiet_hours = match fields.get("quiet_hours") {
        None => Some(None),
        Some(node) => schedule::quiet_hours(checker, node, fields.at("quiet_hours")).map(Some),
    };
    let frequency_cap = match fields.get("frequency_cap") {
        None => Some(None),
        Some(node) => schedule::frequency_cap(checker, node, fields.at("frequency_cap")).map(Some),
    };
    let priority = match fields.get("priority") {
        None => Some(None),
        Some(node) => checker
            .choice(node, &fields.at("priority"), &PRIORITIES)
            .map(Some),
    };
    fields.finish(checker, &DELIVERY_KEYS);
    Some(Delivery {
        rate_per_sec: rate_per_sec?,
        max_attempts: max_attempts?,
        expires_after: expires_after?,
        window: window?,
        priority: priority?,
        quiet_hours: quiet_hours?,
        frequency_cap: frequency_cap?,
    })
}

/// Spans of every value under `message`, by path, so problems found on the JSON (Liquid,
/// limits) can point back into the TOML source.
struct SpanIndex {
    spans: HashMap<String, Range<usize>>,
}

impl SpanIndex {
    fn new(message: &Node, enabled: bool) -> Self {
        let mut spans = HashMap::new();
        if enabled {
            index(message, FieldPath::root().key("message"), &mut spans);
        }
        Self { spans }
    }

    /// The span of `path`, or of its nearest ancestor that has one.
    fn find(&self, path: &str) -> Option<&Range<usize>> {
        let mut path = path;
        loop {
            if let Some(span) = self.spans.get(path) {
                return Some(span);
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }
}

fn index(node: &Node, path: FieldPath, spans: &mut HashMap<String, Range<usize>>) {
    match &node.value {
        NodeValue::Table(entries) => {
            for entry in entries {
                index(&entry.value, path.key(&entry.key), spans);
            }
        }
        NodeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                index(item, path.index(i), spans);
            }
        }
        _ => {}
    }
    if let Some(span) = &node.span {
        spans.insert(path.into_string(), span.clone());
    }
}
