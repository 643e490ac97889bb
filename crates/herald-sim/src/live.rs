//! `Live`: the current `SimConfig` compiled for the hot path (token → page map, keyed HMAC, PSID
//! rule sets, version headers) plus the set of revoked pages. Replaced whole on every change, read
//! through an `Arc` snapshot; it holds no counters.

use std::collections::{HashMap, HashSet};

use hmac::{Hmac, Mac};
use hyper::header::HeaderValue;
use sha2::Sha256;

use crate::config::{PsidMatch, PsidOutcome, SimConfig};

/// Versions below this are expired; Meta serves them as the oldest live version
/// (docs/messenger-platform.md §1.1).
const OLDEST_LIVE_VERSION: u32 = 22;

/// A compiled, immutable view of the configuration.
pub(crate) struct Live {
    pub(crate) config: SimConfig,
    pub(crate) proof_key: Option<Hmac<Sha256>>,
    page_by_token: HashMap<String, String>,
    revoked: HashSet<String>,
    rules: Vec<(Matcher, PsidOutcome)>,
    version_headers: Vec<HeaderValue>,
}

enum Matcher {
    Prefix(String),
    Exact(HashSet<String>),
}

impl Live {
    pub(crate) fn new(config: SimConfig, revoked: HashSet<String>) -> Self {
        let proof_key = config
            .app_secret
            .as_deref()
            .and_then(|secret| Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok());
        let page_by_token = config
            .tokens
            .iter()
            .map(|(page, token)| (token.clone(), page.clone()))
            .collect();
        let rules = config
            .psid_rules
            .iter()
            .map(|rule| {
                let matcher = match &rule.matcher {
                    PsidMatch::Prefix(prefix) => Matcher::Prefix(prefix.clone()),
                    PsidMatch::Psids(psids) => Matcher::Exact(psids.iter().cloned().collect()),
                };
                (matcher, rule.outcome.clone())
            })
            .collect();
        let version_headers = (OLDEST_LIVE_VERSION
            ..=config.latest_version.max(OLDEST_LIVE_VERSION))
            .map(|major| HeaderValue::from_str(&format!("v{major}.0")).expect("ascii"))
            .collect();
        Self {
            config,
            proof_key,
            page_by_token,
            revoked,
            rules,
            version_headers,
        }
    }

    pub(crate) fn revoked(&self) -> &HashSet<String> {
        &self.revoked
    }

    pub(crate) fn is_revoked(&self, page_id: &str) -> bool {
        !self.revoked.is_empty() && self.revoked.contains(page_id)
    }

    /// The page whose configured token this is. Not constant-time: `me` calls must look it up.
    pub(crate) fn page_for_token(&self, token: &str) -> Option<&str> {
        self.page_by_token.get(token).map(String::as_str)
    }

    /// The scripted outcome for a recipient, if a rule matches.
    pub(crate) fn outcome_for(&self, recipient: &str) -> Option<&PsidOutcome> {
        self.rules.iter().find_map(|(matcher, outcome)| {
            let hit = match matcher {
                Matcher::Prefix(prefix) => recipient.starts_with(prefix.as_str()),
                Matcher::Exact(set) => set.contains(recipient),
            };
            hit.then_some(outcome)
        })
    }

    /// The `facebook-api-version` answer header for a requested major version, or `None` when the
    /// version does not exist yet.
    pub(crate) fn served_version(&self, major: u32) -> Option<&HeaderValue> {
        if major > self.config.latest_version {
            return None;
        }
        let index = major.saturating_sub(OLDEST_LIVE_VERSION) as usize;
        self.version_headers.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PsidRule;

    #[test]
    fn rules_match_in_order_and_versions_map_to_live_ones() {
        let config = SimConfig {
            psid_rules: vec![
                PsidRule::exact(["5510"], PsidOutcome::FailFirst),
                PsidRule::prefix("551", PsidOutcome::Unavailable),
            ],
            ..SimConfig::default()
        };
        let live = Live::new(config, HashSet::new());
        assert_eq!(live.outcome_for("5510"), Some(&PsidOutcome::FailFirst));
        assert_eq!(live.outcome_for("5511"), Some(&PsidOutcome::Unavailable));
        assert_eq!(live.outcome_for("1"), None);
        assert_eq!(live.served_version(25).unwrap(), "v25.0");
        assert_eq!(live.served_version(19).unwrap(), "v22.0");
        assert_eq!(live.served_version(26).unwrap(), "v26.0");
        assert!(live.served_version(27).is_none());
    }
}
