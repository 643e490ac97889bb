//! `Secret`: page tokens, app secrets and API tokens. `Debug` and `Display` print `***`, so a
//! secret inside a config struct, an error or a log field never leaks; `expose` is the one door.

use std::fmt;

/// A string that must never be printed: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is empty or only whitespace (an unusable credential).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("EAAB-page-token-123");
        let wrapped = Some(vec![secret.clone()]);
        for shown in [
            format!("{secret}"),
            format!("{secret:?}"),
            format!("{wrapped:?}"),
            format!("{secret:#?}"),
        ] {
            assert!(!shown.contains("EAAB"), "leaked: {shown}");
        }
        assert_eq!(secret.expose(), "EAAB-page-token-123");
    }
}
