//! `Usage`: what the rate-limit headers of one Graph response say (docs/messenger-platform.md
//! §4.2). Owns the parsing of `X-Business-Use-Case-Usage`, `X-App-Usage` and `X-Page-Usage`;
//! deciding how fast to send is the worker's job. A malformed header is ignored, never an error:
//! usage headers are advice, and a send that succeeded must not fail because of them.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

/// The Business Use Case header a Page-token sender sees.
const BUC_HEADER: &str = "x-business-use-case-usage";
/// Platform (app-level) usage.
const APP_HEADER: &str = "x-app-usage";
/// Legacy page-level usage; parsed when present.
const PAGE_HEADER: &str = "x-page-usage";
/// The percentages the three headers report.
const PERCENT_FIELDS: [&str; 3] = ["call_count", "total_cputime", "total_time"];
/// Meta's BUC window is 24 hours at most; a larger wait is a bogus value, not a plan.
const MAX_REGAIN: Duration = Duration::from_secs(24 * 60 * 60);

/// Graph's view of how much of the allowance is used, merged over every usage header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// The highest of `call_count`, `total_cputime` and `total_time` over every entry of every
    /// header, divided by 100: 1.0 is the limit. Values above 1.0 happen.
    pub ratio: f64,
    /// The longest `estimated_time_to_regain_access` (sent in minutes) over all entries, when
    /// above zero: how long Meta says the caller stays throttled.
    pub regain_access: Option<Duration>,
}

impl Usage {
    /// Reads the usage headers of a response; `None` when none is present and well-formed.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        Self::parse(value(BUC_HEADER), value(APP_HEADER), value(PAGE_HEADER))
    }

    /// Merges the three headers' values (each a JSON string, each optional).
    pub(crate) fn parse(buc: Option<&str>, app: Option<&str>, page: Option<&str>) -> Option<Self> {
        let mut merged = Accumulator::default();
        if let Some(Value::Object(by_id)) = buc.and_then(|text| serde_json::from_str(text).ok()) {
            // Keyed by business object id, each a list of entries: evaluate every one, since a
            // `pages` entry above 100 % can sit next to a quiet `messenger` entry.
            for entries in by_id.values() {
                if let Value::Array(entries) = entries {
                    for entry in entries {
                        if let Value::Object(entry) = entry {
                            merged.add(entry);
                        }
                    }
                }
            }
        }
        for flat in [app, page].into_iter().flatten() {
            if let Ok(Value::Object(entry)) = serde_json::from_str(flat) {
                merged.add(&entry);
            }
        }
        merged.finish()
    }
}

/// Running maxima while walking the entries.
#[derive(Default)]
struct Accumulator {
    percent: Option<f64>,
    regain_minutes: Option<f64>,
}

impl Accumulator {
    fn add(&mut self, entry: &Map<String, Value>) {
        for field in PERCENT_FIELDS {
            if let Some(percent) = non_negative(entry.get(field)) {
                self.percent = Some(self.percent.map_or(percent, |seen| seen.max(percent)));
            }
        }
        if let Some(minutes) = non_negative(entry.get("estimated_time_to_regain_access")) {
            self.regain_minutes = Some(
                self.regain_minutes
                    .map_or(minutes, |seen| seen.max(minutes)),
            );
        }
    }

    fn finish(self) -> Option<Usage> {
        if self.percent.is_none() && self.regain_minutes.is_none() {
            return None;
        }
        let regain_access = self
            .regain_minutes
            .filter(|minutes| *minutes > 0.0)
            .and_then(|minutes| {
                Duration::try_from_secs_f64((minutes * 60.0).min(MAX_REGAIN.as_secs_f64())).ok()
            });
        Some(Usage {
            ratio: self.percent.unwrap_or(0.0) / 100.0,
            regain_access,
        })
    }
}

/// A finite, non-negative number (Meta sends integers; floats are accepted too).
fn non_negative(value: Option<&Value>) -> Option<f64> {
    value
        .and_then(Value::as_f64)
        .filter(|number| number.is_finite() && *number >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(buc: Option<&str>, app: Option<&str>, page: Option<&str>, expected: Option<Usage>) {
        assert_eq!(
            Usage::parse(buc, app, page),
            expected,
            "buc {buc:?}, app {app:?}, page {page:?}"
        );
    }

    fn usage(ratio: f64, regain_minutes: u64) -> Option<Usage> {
        let regain_access = (regain_minutes > 0).then(|| Duration::from_secs(regain_minutes * 60));
        Some(Usage {
            ratio,
            regain_access,
        })
    }

    #[test]
    fn business_use_case_header() {
        // docs/messenger-platform.md §4.2: the documented entry shape.
        check(
            Some(
                r#"{"1000000001":[{"type":"messenger","call_count":1,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":0}]}"#,
            ),
            None,
            None,
            usage(0.01, 0),
        );
        // docs/messenger-platform.md §4.2: a real 613 carried a `pages` entry above 100 %.
        check(
            Some(
                r#"{"1000000001":[{"type":"messenger","call_count":3,"total_cputime":1,"total_time":2,"estimated_time_to_regain_access":0},{"type":"pages","call_count":107,"total_cputime":20,"total_time":31,"estimated_time_to_regain_access":9}]}"#,
            ),
            None,
            None,
            usage(1.07, 9),
        );
        // Every key counts, not only the first.
        check(
            Some(
                r#"{"1":[{"type":"pages","call_count":5,"total_cputime":5,"total_time":5,"estimated_time_to_regain_access":0}],"2":[{"type":"messenger","call_count":10,"total_cputime":80,"total_time":12,"estimated_time_to_regain_access":3}]}"#,
            ),
            None,
            None,
            usage(0.8, 3),
        );
    }

    #[test]
    fn app_and_page_headers() {
        // docs/messenger-platform.md §4.2: X-App-Usage example, and the all-zero one seen on
        // Page-token sends.
        check(
            None,
            Some(r#"{"call_count":28,"total_time":25,"total_cputime":25}"#),
            None,
            usage(0.28, 0),
        );
        check(
            None,
            Some(r#"{"call_count":0,"total_time":0,"total_cputime":0}"#),
            None,
            usage(0.0, 0),
        );
        check(
            None,
            None,
            Some(r#"{"call_count":12,"total_time":40,"total_cputime":3}"#),
            usage(0.4, 0),
        );
        // The highest value across all headers wins.
        check(
            Some(
                r#"{"9":[{"type":"messenger","call_count":50,"total_cputime":1,"total_time":1}]}"#,
            ),
            Some(r#"{"call_count":70,"total_time":1,"total_cputime":1}"#),
            Some(r#"{"call_count":60,"total_time":1,"total_cputime":1}"#),
            usage(0.7, 0),
        );
    }

    #[test]
    fn malformed_headers_are_ignored() {
        check(None, None, None, None);
        check(Some("not json"), Some("{"), Some("[1,2]"), None);
        check(
            Some(r#"{"1":"oops"}"#),
            Some(r#"{"call_count":"high"}"#),
            None,
            None,
        );
        check(
            Some(r#"{"1":[1,null,{"call_count":-5}]}"#),
            None,
            None,
            None,
        );
        // One bad header does not hide a good one.
        check(
            Some("garbage"),
            Some(r#"{"call_count":30}"#),
            None,
            usage(0.3, 0),
        );
        // An absurd wait is capped at the 24-hour window instead of overflowing.
        check(
            Some(r#"{"1":[{"call_count":100,"estimated_time_to_regain_access":1e300}]}"#),
            None,
            None,
            Some(Usage {
                ratio: 1.0,
                regain_access: Some(MAX_REGAIN),
            }),
        );
    }

    #[test]
    fn reads_real_header_map() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "X-Business-Use-Case-Usage",
            r#"{"1000000001":[{"type":"messenger","call_count":95,"total_cputime":2,"total_time":3,"estimated_time_to_regain_access":15}]}"#
                .parse()
                .expect("valid header value"),
        );
        assert_eq!(Usage::from_headers(&headers), usage(0.95, 15));
        assert_eq!(Usage::from_headers(&HeaderMap::new()), None);
    }
}
