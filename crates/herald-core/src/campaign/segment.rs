//! Reading `[segment]` and its filters out of a campaign document. A filter entry is either a
//! condition or a nested group:
//!
//! ```toml
//! [[segment.filter]]
//! attribute = "country"
//! op = "in"
//! value = ["BR", "AR"]
//!
//! [[segment.filter]]                  # a nested group: only the key `group`
//! group = { match = "any", filter = [
//!   { attribute = "plan", op = "eq", value = "pro" },
//!   { attribute = "last_inbound_at", op = "within", value = "7d" },
//! ] }
//! ```
//!
//! The group can also be written as `[segment.filter.group]` with `[[segment.filter.group.filter]]`
//! entries under the `[[segment.filter]]` it belongs to; JSON writes `{"group": {...}}`.

use super::check::{Checker, Fields};
use super::doc::{Node, NodeValue};
use super::spec::{MATCHES, Segment, SegmentSource};
use crate::duration::parse_duration;
use crate::filter::{Condition, Filter, FilterGroup, Match, OP_NAMES, Op, Operand};
use crate::path::FieldPath;
use crate::user::Attribute;

const SEGMENT_KEYS: [&str; 4] = ["file", "source", "match", "filter"];
const CONDITION_KEYS: [&str; 4] = ["attribute", "op", "value", "group"];
const GROUP_KEYS: [&str; 2] = ["match", "filter"];
const SOURCES: [(&str, Source); 2] = [("store", Source::Store), ("file", Source::File)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Store,
    File,
}

/// `[segment]`; absent means "users from the command line, no filters".
pub(crate) fn segment(checker: &mut Checker<'_>, node: Option<&Node>) -> Option<Segment> {
    let Some(node) = node else {
        return Some(Segment::default());
    };
    let mut fields = checker.table(node, FieldPath::root().key("segment"))?;
    let file = fields
        .get("file")
        .and_then(|n| Some((checker.string(n, &fields.at("file"))?, n)));
    let source = fields
        .get("source")
        .and_then(|n| checker.choice(n, &fields.at("source"), &SOURCES));
    let matching = fields.get("match").map_or(Some(Match::All), |n| {
        checker.choice(n, &fields.at("match"), &MATCHES)
    });
    let filters = fields.get("filter").map_or(Some(Vec::new()), |n| {
        filters(checker, n, &fields.at("filter"))
    });
    let source = match (file, source) {
        (Some((_, node)), Some(Source::Store)) => {
            let message = "`file` and `source = \"store\"` exclude each other; keep one";
            checker.data(&fields.at("file"), node, message);
            None
        }
        (Some((file, node)), _) if file.trim().is_empty() => {
            checker.data(&fields.at("file"), node, "must not be empty");
            None
        }
        (Some((file, _)), _) => Some(SegmentSource::File(file.to_owned())),
        (None, Some(Source::Store)) => Some(SegmentSource::Store),
        (None, _) => Some(SegmentSource::Unset),
    };
    fields.finish(checker, &SEGMENT_KEYS);
    Some(Segment {
        source: source?,
        filter: FilterGroup {
            matching: matching?,
            filters: filters?,
        },
    })
}

/// A list of filter entries; `None` if any of them is wrong (all are still checked).
fn filters(checker: &mut Checker<'_>, node: &Node, path: &FieldPath) -> Option<Vec<Filter>> {
    let items = checker.list(node, path)?;
    let parsed: Vec<Option<Filter>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| filter(checker, item, path.index(i)))
        .collect();
    parsed.into_iter().collect()
}

fn filter(checker: &mut Checker<'_>, node: &Node, path: FieldPath) -> Option<Filter> {
    let mut fields = checker.table(node, path)?;
    if let Some(group_node) = fields.get("group") {
        let parsed = group(checker, group_node, fields.at("group"));
        fields.finish(checker, &["group"]);
        return parsed.map(Filter::Group);
    }
    let parsed = condition(checker, &mut fields);
    fields.finish(checker, &CONDITION_KEYS);
    parsed.map(Filter::Condition)
}

fn group(checker: &mut Checker<'_>, node: &Node, path: FieldPath) -> Option<FilterGroup> {
    let mut fields = checker.table(node, path)?;
    let matching = fields.get("match").map_or(Some(Match::All), |n| {
        checker.choice(n, &fields.at("match"), &MATCHES)
    });
    let filters = fields
        .required(checker, "filter")
        .and_then(|n| Some((filters(checker, n, &fields.at("filter"))?, n)));
    let filter_path = fields.at("filter");
    fields.finish(checker, &GROUP_KEYS);
    let (filters, filters_node) = filters?;
    if filters.is_empty() {
        checker.data(
            &filter_path,
            filters_node,
            "a group needs at least one filter",
        );
        return None;
    }
    Some(FilterGroup {
        matching: matching?,
        filters,
    })
}

fn condition(checker: &mut Checker<'_>, fields: &mut Fields<'_>) -> Option<Condition> {
    let attribute = fields
        .required(checker, "attribute")
        .and_then(|n| Some((checker.string(n, &fields.at("attribute"))?, n)));
    let op = fields
        .required(checker, "op")
        .and_then(|n| Some((checker.string(n, &fields.at("op"))?, n)));
    let value = fields.get("value");
    let attribute = match attribute {
        Some((name, node)) if name.trim().is_empty() => {
            checker.data(&fields.at("attribute"), node, "must not be empty");
            None
        }
        Some((name, _)) => Some(Attribute::from_name(name)),
        None => None,
    };
    let (op_name, op_node) = op?;
    let op = operator(checker, fields, op_name, op_node, value);
    Some(Condition {
        attribute: attribute?,
        op: op?,
    })
}

/// Builds the op from its name and value, checking the value's shape for that op.
fn operator(
    checker: &mut Checker<'_>,
    fields: &Fields<'_>,
    name: &str,
    op_node: &Node,
    value: Option<&Node>,
) -> Option<Op> {
    let path = fields.at("value");
    if !OP_NAMES.contains(&name) {
        let message = format!(
            "unknown op `{name}`; expected one of {}",
            OP_NAMES.join(", ")
        );
        checker.data(&fields.at("op"), op_node, message);
        return None;
    }
    if matches!(name, "exists" | "blank") {
        if let Some(value) = value {
            checker.data(
                &path,
                value,
                format!("op `{name}` takes no value; remove it"),
            );
            return None;
        }
        return Some(if name == "exists" {
            Op::Exists
        } else {
            Op::Blank
        });
    }
    let Some(value) = value else {
        let message = format!("op `{name}` needs a `value`");
        checker.data(&path, op_node, message);
        return None;
    };
    match name {
        "in" => {
            let list = match &value.value {
                NodeValue::Array(items) if !items.is_empty() => items,
                _ => {
                    let message = "op `in` takes a non-empty list, e.g. [\"BR\", \"AR\"]";
                    checker.data(&path, value, message);
                    return None;
                }
            };
            let operands: Vec<Option<Operand>> = list
                .iter()
                .enumerate()
                .map(|(i, item)| scalar(checker, item, &path.index(i), name).map(Operand::new))
                .collect();
            operands.into_iter().collect::<Option<_>>().map(Op::In)
        }
        "within" | "older_than" => {
            let NodeValue::Str(text) = &value.value else {
                let message =
                    format!("op `{name}` takes a duration string such as \"24h\" or \"7d\"");
                checker.data(&path, value, message);
                return None;
            };
            match parse_duration(text) {
                Ok(age) if name == "within" => Some(Op::Within(age)),
                Ok(age) => Some(Op::OlderThan(age)),
                Err(error) => {
                    checker.data(&path, value, error.to_string());
                    None
                }
            }
        }
        _ => {
            let text = scalar(checker, value, &path, name)?;
            Some(match name {
                "eq" => Op::Eq(Operand::new(text)),
                "neq" => Op::Neq(Operand::new(text)),
                "contains" => Op::Contains(text),
                "gt" => Op::Gt(Operand::new(text)),
                "gte" => Op::Gte(Operand::new(text)),
                "lt" => Op::Lt(Operand::new(text)),
                _ => Op::Lte(Operand::new(text)),
            })
        }
    }
}

/// A single comparable value (string, number, boolean or date) as text.
fn scalar(checker: &mut Checker<'_>, node: &Node, path: &FieldPath, op: &str) -> Option<String> {
    match &node.value {
        NodeValue::Str(text) | NodeValue::Datetime(text) => Some(text.clone()),
        NodeValue::Int(number) => Some(number.to_string()),
        NodeValue::Float(number) if number.is_finite() => Some(number.to_string()),
        NodeValue::Bool(flag) => Some(flag.to_string()),
        NodeValue::Array(_) if op != "in" => {
            let message =
                format!("op `{op}` takes a single value, not a list; use `in` for a list");
            checker.data(path, node, message);
            None
        }
        _ => {
            let message = format!(
                "op `{op}` compares with a string, number, boolean or date, not {}",
                node.type_name()
            );
            checker.data(path, node, message);
            None
        }
    }
}
