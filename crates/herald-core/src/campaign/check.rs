//! `Checker`: collects problems while validation reads a `Node` tree, and `Fields`, a table
//! reader that remembers which keys were read so the rest can be reported as unknown. Typed
//! reads report wrong types as usage problems and return `None`, so validation carries on.

use std::ops::Range;

use super::doc::{Entry, LineIndex, Node, NodeValue};
use super::problem::{Problem, ProblemKind};
use crate::path::FieldPath;

/// Collects problems, turning spans into line:column.
pub(crate) struct Checker<'a> {
    lines: Option<&'a LineIndex<'a>>,
    pub(crate) problems: Vec<Problem>,
}

/// A table being read.
pub(crate) struct Fields<'n> {
    node: &'n Node,
    entries: &'n [Entry],
    used: Vec<bool>,
    pub(crate) path: FieldPath,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(lines: Option<&'a LineIndex<'a>>) -> Self {
        Self {
            lines,
            problems: Vec::new(),
        }
    }

    pub(crate) fn report(
        &mut self,
        kind: ProblemKind,
        path: &FieldPath,
        span: Option<&Range<usize>>,
        message: impl Into<String>,
    ) {
        let line_col = self
            .lines
            .zip(span)
            .map(|(lines, span)| lines.line_col(span.start));
        self.problems.push(Problem {
            path: path.as_str().to_owned(),
            line_col,
            message: message.into(),
            kind,
        });
    }

    /// The shape is wrong.
    pub(crate) fn usage(&mut self, path: &FieldPath, node: &Node, message: impl Into<String>) {
        self.report(ProblemKind::Usage, path, node.span.as_ref(), message);
    }

    /// A value breaks a rule.
    pub(crate) fn data(&mut self, path: &FieldPath, node: &Node, message: impl Into<String>) {
        self.report(ProblemKind::Data, path, node.span.as_ref(), message);
    }

    fn wrong_type(&mut self, path: &FieldPath, node: &Node, expected: &str) {
        let message = format!("expected {expected}, found {}", node.type_name());
        self.usage(path, node, message);
    }

    pub(crate) fn table<'n>(&mut self, node: &'n Node, path: FieldPath) -> Option<Fields<'n>> {
        match &node.value {
            NodeValue::Table(entries) => Some(Fields {
                node,
                entries,
                used: vec![false; entries.len()],
                path,
            }),
            _ => {
                self.wrong_type(&path, node, "a table");
                None
            }
        }
    }

    pub(crate) fn string<'n>(&mut self, node: &'n Node, path: &FieldPath) -> Option<&'n str> {
        match &node.value {
            NodeValue::Str(text) => Some(text),
            _ => {
                self.wrong_type(path, node, "a string");
                None
            }
        }
    }

    pub(crate) fn integer(&mut self, node: &Node, path: &FieldPath) -> Option<i64> {
        match node.value {
            NodeValue::Int(value) => Some(value),
            _ => {
                self.wrong_type(path, node, "an integer");
                None
            }
        }
    }

    pub(crate) fn list<'n>(&mut self, node: &'n Node, path: &FieldPath) -> Option<&'n [Node]> {
        match &node.value {
            NodeValue::Array(items) => Some(items),
            _ => {
                self.wrong_type(path, node, "a list");
                None
            }
        }
    }

    /// A string that must be one of `choices`; an unknown spelling is a data problem.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        node: &Node,
        path: &FieldPath,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let text = self.string(node, path)?;
        if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(*value);
        }
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let key = path.as_str().rsplit('.').next().unwrap_or_default();
        let message = format!(
            "unknown {key} `{text}`; expected one of {}",
            names.join(", ")
        );
        self.data(path, node, message);
        None
    }
}

impl<'n> Fields<'n> {
    /// The value of `key`, marking it as read.
    pub(crate) fn get(&mut self, key: &str) -> Option<&'n Node> {
        let index = self.entries.iter().position(|entry| entry.key == key)?;
        self.used[index] = true;
        Some(&self.entries[index].value)
    }

    /// Like `get`, reporting a usage problem when the key is absent. A missing top-level key
    /// has no line; a missing key of a nested table points at the table.
    pub(crate) fn required(&mut self, checker: &mut Checker<'_>, key: &str) -> Option<&'n Node> {
        let value = self.get(key);
        if value.is_none() {
            let span = if self.path.as_str().is_empty() {
                None
            } else {
                self.node.span.as_ref()
            };
            let message = format!("missing required key `{key}`");
            checker.report(ProblemKind::Usage, &self.path.key(key), span, message);
        }
        value
    }

    /// The path of a key of this table.
    pub(crate) fn at(&self, key: &str) -> FieldPath {
        self.path.key(key)
    }

    /// Reports every key nobody read as unknown, listing the keys this table accepts.
    pub(crate) fn finish(self, checker: &mut Checker<'_>, allowed: &[&str]) {
        for (entry, used) in self.entries.iter().zip(self.used) {
            if used {
                continue;
            }
            let message = format!(
                "unknown key `{}`; expected one of {}",
                entry.key,
                allowed.join(", ")
            );
            let span = entry.key_span.as_ref().or(entry.value.span.as_ref());
            checker.report(
                ProblemKind::Usage,
                &self.path.key(&entry.key),
                span,
                message,
            );
        }
    }
}
