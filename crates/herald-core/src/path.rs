//! `FieldPath`: the dotted path that names a place in a campaign document or a message
//! (`delivery.max_attempts`, `segment.filter[1].op`, `message.quick_replies[3].title`).
//! Indexes are 0-based, as in JSON tooling.

use std::fmt;

/// A path into a document, built one key or index at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(String);

impl FieldPath {
    /// The document root (prints as the empty string).
    pub(crate) fn root() -> Self {
        Self(String::new())
    }

    /// The child `key`; keys that are not plain words are quoted (`a["b.c"]`).
    pub(crate) fn key(&self, key: &str) -> Self {
        let plain = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let mut out = self.0.clone();
        if !plain {
            out.push('[');
            out.push_str(&serde_json::Value::from(key).to_string());
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        }
        Self(out)
    }

    /// A path already printed (limit violations carry their path as a string).
    pub(crate) fn from_printed(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// The element `index` of a list.
    pub(crate) fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_paths() {
        let root = FieldPath::root();
        assert_eq!(root.as_str(), "");
        assert_eq!(
            root.key("delivery").key("max_attempts").as_str(),
            "delivery.max_attempts"
        );
        assert_eq!(
            root.key("segment")
                .key("filter")
                .index(1)
                .key("op")
                .as_str(),
            "segment.filter[1].op"
        );
        assert_eq!(root.key("message").key("a.b").as_str(), "message[\"a.b\"]");
        assert_eq!(root.key("").as_str(), "[\"\"]");
    }
}
