//! Per-user rendering of a campaign into the exact Send API body (the `request` of a
//! `SendJob`). The message is compiled once: every string holding `{{` or `{%` becomes a
//! Liquid template, everything else is serialised to JSON text up front, and the body becomes a
//! flat list of pieces. Rendering a user is then one pass of byte appends plus the templates,
//! writing Liquid output straight through a JSON string escaper: no `serde_json::Value`, no
//! re-parse (except for the rare message whose `type`-like fields are themselves templates).
//! Liquid output is not HTML-escaped.

mod escape;
mod globals;
mod liquid_error;

use serde_json::Value;

use crate::limits::{LimitViolation, TextLimit, check_message_limits, text_limits};
use crate::path::FieldPath;
use crate::skip::SkipReason;
use crate::user::User;

use escape::JsonEscaper;
use globals::Globals;
use liquid_error::first_line;

pub(crate) use escape::write_json_str;
pub(crate) use liquid_error::describe_liquid_error;

/// Fields Graph reads to decide what the rest of the message means; if one of them is a
/// template, the per-string limits are not known up front and the whole body is re-checked.
const SHAPE_KEYS: [&str; 3] = ["type", "content_type", "template_type"];

/// `metadata` holds the job id: Meta allows fewer than 1000 characters.
const METADATA: TextLimit = TextLimit {
    min: 0,
    max: 999,
    rule: "fewer than 1000",
};

/// The top-level request fields that precede `message`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header<'a> {
    pub(crate) messaging_type: &'a str,
    pub(crate) tag: Option<&'a str>,
    pub(crate) notification_type: Option<&'a str>,
}

/// A Liquid syntax error in one string of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub(crate) path: FieldPath,
    pub(crate) message: String,
}

/// A campaign's request body, compiled.
pub(crate) struct RequestTemplate {
    pieces: Vec<Piece>,
    /// Re-check the whole rendered message (see `SHAPE_KEYS`).
    full_check: bool,
    /// Bytes to reserve for a body: the literal parts plus a guess per template.
    capacity: usize,
}

enum Piece {
    /// JSON text copied as is.
    Raw(String),
    /// The user's PSID as a JSON string.
    Psid,
    /// The job id as a JSON string (`message.metadata`).
    JobId,
    /// A Liquid template rendered into a JSON string.
    Template {
        template: liquid::Template,
        path: FieldPath,
        limit: Option<TextLimit>,
    },
}

impl std::fmt::Debug for RequestTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let templates: Vec<&str> = self.template_paths().collect();
        f.debug_struct("RequestTemplate")
            .field("templates", &templates)
            .field("full_check", &self.full_check)
            .finish_non_exhaustive()
    }
}

/// Whether a string is compiled as Liquid.
pub(crate) fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// The paths of the strings of `message` that would compile as templates.
pub(crate) fn template_paths(message: &Value) -> Vec<String> {
    fn walk(value: &Value, path: FieldPath, out: &mut Vec<String>) {
        match value {
            Value::String(text) if is_template(text) => out.push(path.into_string()),
            Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, path.key(k), out)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, path.index(i), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(message, FieldPath::root().key("message"), &mut out);
    out
}

/// The parser every campaign uses: Liquid's standard tags and filters (incl. `default`).
pub(crate) fn parser() -> liquid::Parser {
    liquid::ParserBuilder::with_stdlib()
        .build()
        .expect("the standard library registers without conflicts")
}

impl RequestTemplate {
    /// Compiles the body; `message` must be an object (the campaign checks that). The key
    /// `metadata` of `message` is ignored: Herald sets it to the job id.
    pub(crate) fn compile(
        header: Header<'_>,
        message: &Value,
        parser: &liquid::Parser,
    ) -> Result<Self, Vec<TemplateError>> {
        let mut builder = Builder {
            pieces: Vec::new(),
            errors: Vec::new(),
            limits: text_limits(message),
            full_check: false,
            parser,
        };
        builder.raw(r#"{"recipient":{"id":"#);
        builder.pieces.push(Piece::Psid);
        builder.raw(r#"},"messaging_type":"#);
        builder.raw(&json(header.messaging_type));
        if let Some(tag) = header.tag {
            builder.raw(r#","tag":"#);
            builder.raw(&json(tag));
        }
        if let Some(notification_type) = header.notification_type {
            builder.raw(r#","notification_type":"#);
            builder.raw(&json(notification_type));
        }
        builder.raw(r#","message":{"#);
        let root = FieldPath::root().key("message");
        let entries = message.as_object().into_iter().flatten();
        let mut first = true;
        for (key, value) in entries.filter(|(key, _)| key.as_str() != "metadata") {
            if !first {
                builder.raw(",");
            }
            first = false;
            builder.raw(&json(key));
            builder.raw(":");
            builder.value(value, root.key(key));
        }
        builder.raw(if first {
            r#""metadata":"#
        } else {
            r#","metadata":"#
        });
        builder.pieces.push(Piece::JobId);
        builder.raw("}}");
        if !builder.errors.is_empty() {
            return Err(builder.errors);
        }
        let capacity = builder
            .pieces
            .iter()
            .map(|piece| match piece {
                Piece::Raw(text) => text.len(),
                Piece::Psid | Piece::JobId | Piece::Template { .. } => 64,
            })
            .sum();
        Ok(Self {
            pieces: builder.pieces,
            full_check: builder.full_check,
            capacity,
        })
    }

    /// The paths of the strings that are templates.
    pub(crate) fn template_paths(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Template { path, .. } => Some(path.as_str()),
            _ => None,
        })
    }

    /// The body for one user, or why the user is skipped: blank PSID, a Liquid error, or a
    /// rendered message that breaks Meta's limits.
    pub(crate) fn render(&self, user: &User, job_id: &str) -> Result<Vec<u8>, SkipReason> {
        let psid = user.psid().ok_or(SkipReason::BlankPsid)?;
        let globals = Globals::new(user);
        let mut out = Vec::with_capacity(self.capacity);
        let mut violations = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Raw(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Psid => write_json_str(&mut out, psid),
                Piece::JobId => write_json_str(&mut out, job_id),
                Piece::Template {
                    template,
                    path,
                    limit,
                } => {
                    let chars = render_template(&mut out, template, &globals)
                        .map_err(|error| SkipReason::RenderError(first_line(&error)))?;
                    if let Some(limit) = limit {
                        violations.extend(limit.check(path.as_str(), chars));
                    }
                }
            }
        }
        violations.extend(METADATA.check("message.metadata", job_id.chars().count()));
        if self.full_check {
            violations = recheck(&out);
        }
        if violations.is_empty() {
            Ok(out)
        } else {
            Err(SkipReason::MessageLimits(violations))
        }
    }

    /// The rendered `message` for a sample user, for validation. A template that fails to
    /// render renders empty (a filter may need an attribute the sample user lacks) and its
    /// error is returned beside the message.
    pub(crate) fn render_sample(&self, user: &User, job_id: &str) -> (Value, Vec<TemplateError>) {
        let globals = Globals::new(user);
        let mut out = Vec::with_capacity(self.capacity);
        let mut failures = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Raw(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Psid => write_json_str(&mut out, user.psid().unwrap_or("0")),
                Piece::JobId => write_json_str(&mut out, job_id),
                Piece::Template { template, path, .. } => {
                    let mark = out.len();
                    if let Err(error) = render_template(&mut out, template, &globals) {
                        out.truncate(mark);
                        out.extend_from_slice(b"\"\"");
                        failures.push(TemplateError {
                            path: path.clone(),
                            message: first_line(&error),
                        });
                    }
                }
            }
        }
        let message = serde_json::from_slice::<Value>(&out)
            .ok()
            .and_then(|mut body| body.get_mut("message").map(Value::take))
            .unwrap_or(Value::Null);
        (message, failures)
    }
}

struct Builder<'p> {
    pieces: Vec<Piece>,
    errors: Vec<TemplateError>,
    limits: Vec<(String, TextLimit)>,
    full_check: bool,
    parser: &'p liquid::Parser,
}

impl Builder<'_> {
    fn raw(&mut self, text: &str) {
        if let Some(Piece::Raw(last)) = self.pieces.last_mut() {
            last.push_str(text);
        } else {
            self.pieces.push(Piece::Raw(text.to_owned()));
        }
    }

    fn value(&mut self, value: &Value, path: FieldPath) {
        match value {
            Value::String(text) if is_template(text) => self.template(text, path),
            Value::Object(map) => {
                self.raw("{");
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        self.raw(",");
                    }
                    self.raw(&json(key));
                    self.raw(":");
                    self.value(value, path.key(key));
                }
                self.raw("}");
            }
            Value::Array(items) => {
                self.raw("[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.raw(",");
                    }
                    self.value(item, path.index(i));
                }
                self.raw("]");
            }
            other => self.raw(&other.to_string()),
        }
    }

    fn template(&mut self, text: &str, path: FieldPath) {
        match self.parser.parse(text) {
            Ok(template) => {
                let last_key = path.as_str().rsplit('.').next().unwrap_or_default();
                if SHAPE_KEYS.contains(&last_key) {
                    self.full_check = true;
                }
                let limit = self
                    .limits
                    .iter()
                    .find(|(at, _)| at == path.as_str())
                    .map(|(_, limit)| *limit);
                self.pieces.push(Piece::Template {
                    template,
                    path,
                    limit,
                });
            }
            Err(error) => self.errors.push(TemplateError {
                path,
                message: describe_liquid_error(&error),
            }),
        }
    }
}

/// Renders a template as a JSON string (quotes included); returns the characters written.
fn render_template(
    out: &mut Vec<u8>,
    template: &liquid::Template,
    globals: &Globals<'_>,
) -> Result<usize, liquid::Error> {
    out.push(b'"');
    let mut writer = JsonEscaper { out, chars: 0 };
    template.render_to(&mut writer, globals)?;
    let chars = writer.chars;
    out.push(b'"');
    Ok(chars)
}

fn recheck(body: &[u8]) -> Vec<LimitViolation> {
    match serde_json::from_slice::<Value>(body) {
        Ok(body) => check_message_limits(body.get("message").unwrap_or(&Value::Null)),
        Err(error) => vec![LimitViolation {
            path: "message".to_owned(),
            message: format!("rendered to invalid JSON: {error}"),
        }],
    }
}

fn json(text: &str) -> String {
    Value::from(text).to_string()
}

#[cfg(test)]
mod tests;
