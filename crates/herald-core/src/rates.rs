//! A page's send ceiling: `PageRates` (the fleet-wide ceiling per page, set per deployment) and
//! the share of it pacing aims at. Workers pace against it; the launch check computes a
//! campaign's send time from it.

use std::collections::BTreeMap;

/// Meta's recommended ceiling for a page with a large audience (docs/messenger-platform.md §4.1).
pub const DEFAULT_PAGE_RATE_PER_SEC: u32 = 250;

/// The share of its ceiling a page is paced at. Graph counts any 1-second span, a token bucket
/// lets a call more than its rate into some spans, and calls jitter on their way: 2 % keeps the
/// page under its limit (herald-worker `pace.rs`). A campaign's send time is computed at this
/// share.
pub const PACING_SHARE: f64 = 0.98;

/// The per-page send ceilings, for the whole fleet together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRates {
    /// Ceiling for pages without their own (`HERALD_PAGE_RATE_PER_SEC`).
    pub default_ceiling: u32,
    /// Page id → ceiling (`HERALD_PAGE_RATE_PER_SEC_<PAGE_ID>`).
    pub pages: BTreeMap<String, u32>,
}

impl Default for PageRates {
    fn default() -> Self {
        Self {
            default_ceiling: DEFAULT_PAGE_RATE_PER_SEC,
            pages: BTreeMap::new(),
        }
    }
}

impl PageRates {
    /// The fleet-wide ceiling for `page_id`, messages per second.
    pub fn ceiling(&self, page_id: &str) -> u32 {
        self.pages
            .get(page_id)
            .copied()
            .unwrap_or(self.default_ceiling)
    }
}
