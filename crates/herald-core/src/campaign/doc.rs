//! `Node`: one tree for a campaign document whether it came as TOML (with byte spans) or JSON
//! (without), so validation is written once and can report every problem instead of stopping
//! at the first serde error. Also `LineIndex`, which turns byte offsets into line:column.

use std::ops::Range;

use serde_json::Value;
use toml::de::{DeTable, DeValue};

/// A value with its source span (TOML only).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) span: Option<Range<usize>>,
    pub(crate) value: NodeValue,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A TOML date/time, kept as its text.
    Datetime(String),
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

/// One key of a table, in source order for JSON and key order for TOML.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_span: Option<Range<usize>>,
    pub(crate) value: Node,
}

/// A syntax error with its byte span (TOML) or line:column (JSON).
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub(crate) span: Option<Range<usize>>,
    pub(crate) line_col: Option<(usize, usize)>,
    pub(crate) message: String,
}

impl Node {
    /// Parses TOML, reporting every syntax error the parser can recover from.
    pub(crate) fn from_toml(source: &str) -> Result<Self, Vec<SyntaxError>> {
        let (table, errors) = DeTable::parse_recoverable(source);
        if !errors.is_empty() {
            return Err(errors
                .into_iter()
                .map(|error| SyntaxError {
                    span: error.span(),
                    line_col: None,
                    message: format!("TOML syntax error: {}", error.message()),
                })
                .collect());
        }
        let span = table.span();
        Ok(Self {
            span: Some(span),
            value: NodeValue::Table(table_entries(table.get_ref())),
        })
    }

    /// Parses JSON; serde_json stops at the first syntax error.
    pub(crate) fn from_json(source: &str) -> Result<Self, SyntaxError> {
        let value: Value = serde_json::from_str(source).map_err(|error| SyntaxError {
            span: None,
            line_col: Some((error.line(), error.column())),
            message: format!("JSON syntax error: {error}"),
        })?;
        Ok(Self::from_value(&value))
    }

    fn from_value(value: &Value) -> Self {
        let value = match value {
            Value::Null => NodeValue::Null,
            Value::Bool(b) => NodeValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => NodeValue::Int(i),
                None => NodeValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => NodeValue::Str(s.clone()),
            Value::Array(items) => NodeValue::Array(items.iter().map(Self::from_value).collect()),
            Value::Object(map) => NodeValue::Table(
                map.iter()
                    .map(|(key, value)| Entry {
                        key: key.clone(),
                        key_span: None,
                        value: Self::from_value(value),
                    })
                    .collect(),
            ),
        };
        Self { span: None, value }
    }

    /// The type's name as error messages spell it.
    pub(crate) fn type_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a float",
            NodeValue::Str(_) => "a string",
            NodeValue::Datetime(_) => "a date-time",
            NodeValue::Array(_) => "a list",
            NodeValue::Table(_) => "a table",
        }
    }

    /// Converts to JSON; a TOML date-time becomes its text. `Err` names a float JSON cannot hold.
    pub(crate) fn to_json(&self) -> Result<Value, &Node> {
        Ok(match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .ok_or(self)?,
            NodeValue::Str(s) | NodeValue::Datetime(s) => Value::String(s.clone()),
            NodeValue::Array(items) => {
                Value::Array(items.iter().map(Node::to_json).collect::<Result<_, _>>()?)
            }
            NodeValue::Table(entries) => Value::Object(
                entries
                    .iter()
                    .map(|entry| Ok((entry.key.clone(), entry.value.to_json()?)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

fn table_entries(table: &DeTable<'_>) -> Vec<Entry> {
    table
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            key_span: Some(key.span()),
            value: from_toml_value(value.get_ref(), value.span()),
        })
        .collect()
}

fn from_toml_value(value: &DeValue<'_>, span: Range<usize>) -> Node {
    let value = match value {
        DeValue::String(s) => NodeValue::Str(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(i) => NodeValue::Int(i),
            Err(_) => NodeValue::Float(f64::NAN),
        },
        DeValue::Float(f) => NodeValue::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => NodeValue::Bool(*b),
        DeValue::Datetime(d) => NodeValue::Datetime(d.to_string()),
        DeValue::Array(items) => NodeValue::Array(
            items
                .iter()
                .map(|item| from_toml_value(item.get_ref(), item.span()))
                .collect(),
        ),
        DeValue::Table(table) => NodeValue::Table(table_entries(table)),
    };
    Node {
        span: Some(span),
        value,
    }
}

/// Maps byte offsets of a source to 1-based line and column (columns count characters).
pub(crate) struct LineIndex<'s> {
    source: &'s str,
    starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { source, starts }
    }

    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self.starts.partition_point(|&start| start <= offset) - 1;
        let start = self.starts[line];
        let column = self
            .source
            .get(start..offset)
            .map_or(offset - start, |text| text.chars().count());
        (line + 1, column + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_counts_characters() {
        let index = LineIndex::new("ab\nçé = 1\n");
        assert_eq!(index.line_col(0), (1, 1));
        assert_eq!(index.line_col(2), (1, 3));
        assert_eq!(index.line_col(3), (2, 1));
        // "çé" is 4 bytes, 2 characters.
        assert_eq!(index.line_col(7), (2, 3));
        assert_eq!(index.line_col(1000), (3, 1));
    }

    #[test]
    fn toml_keeps_spans_and_json_does_not() {
        let toml = Node::from_toml("a = 1\n[t]\nb = \"x\"\n").unwrap();
        let NodeValue::Table(entries) = &toml.value else {
            panic!("not a table");
        };
        assert_eq!(entries[0].key, "a");
        assert_eq!(entries[0].key_span, Some(0..1));
        let json = Node::from_json(r#"{"a": 1}"#).unwrap();
        assert!(json.span.is_none());
        let error = Node::from_json("{\n  \"a\": }").unwrap_err();
        assert_eq!(error.line_col, Some((2, 8)));
    }
}
