//! `PageTokens`: the page access tokens a worker sends with, shared between the binary (which
//! replaces them on SIGHUP or when the tokens file changes) and the running worker (which reads
//! one per send and resumes a halted page whose token was replaced). Where tokens come from is
//! the binary's business; they are `Secret`s and never printed.

use std::collections::BTreeMap;
use std::sync::Arc;

use herald_core::Secret;
use tokio::sync::watch;

/// Page id → token, replaceable at run time. Clones share the same tokens.
#[derive(Clone)]
pub struct PageTokens {
    current: Arc<watch::Sender<Arc<BTreeMap<String, Secret>>>>,
}

impl PageTokens {
    /// Starts with these tokens.
    pub fn new(tokens: BTreeMap<String, Secret>) -> Self {
        let (sender, _) = watch::channel(Arc::new(tokens));
        Self {
            current: Arc::new(sender),
        }
    }

    /// The token for `page_id`, if one is configured.
    pub fn get(&self, page_id: &str) -> Option<Secret> {
        self.current.borrow().get(page_id).cloned()
    }

    /// Replaces every token; returns the pages whose token is new or different. The worker
    /// resumes those of them that are halted.
    pub fn replace(&self, tokens: BTreeMap<String, Secret>) -> Vec<String> {
        let old = self.current.borrow().clone();
        let changed = tokens
            .iter()
            .filter(|(page, token)| old.get(*page) != Some(*token))
            .map(|(page, _)| page.clone())
            .collect();
        self.current.send_replace(Arc::new(tokens));
        changed
    }

    /// The current tokens.
    pub(crate) fn snapshot(&self) -> Arc<BTreeMap<String, Secret>> {
        self.current.borrow().clone()
    }

    /// Notified after every `replace`.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<BTreeMap<String, Secret>>> {
        self.current.subscribe()
    }
}

impl Default for PageTokens {
    fn default() -> Self {
        Self::new(BTreeMap::new())
    }
}

/// Page ids only: the tokens never print.
impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tokens = self.current.borrow();
        f.debug_struct("PageTokens")
            .field("pages", &tokens.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        pairs
            .iter()
            .map(|(page, token)| ((*page).to_owned(), Secret::new(*token)))
            .collect()
    }

    #[test]
    fn replace_reports_new_and_changed_pages_and_debug_hides_tokens() {
        let shared = PageTokens::new(tokens(&[("1", "EAAone"), ("2", "EAAtwo")]));
        let reader = shared.clone();
        let changed = shared.replace(tokens(&[("1", "EAAone"), ("2", "EAAnew"), ("3", "EAAx")]));
        assert_eq!(changed, ["2", "3"]);
        assert_eq!(
            reader.get("2").map(|t| t.expose().to_owned()),
            Some("EAAnew".into())
        );
        assert!(reader.get("9").is_none());
        let shown = format!("{reader:?}");
        assert!(shown.contains("\"3\"") && !shown.contains("EAA"), "{shown}");
    }
}
