//! Events and purchases as attributes: each user's count and latest time per event name and
//! per product, and over all purchases. Segment filters read them like any attribute
//! (`purchases.last_at` `within` `30d`, `events.added_to_cart.count` `gte` `2`).
//!
//! The counts are read from the store, increased and written back in the same `/users/track`
//! call; two calls for the same user at the same moment may count one event once instead of
//! twice. A latest time only moves forward, so events sent out of order keep the newest.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::request::{Action, ActionKind};

/// Adds `action` to `user` (the attributes this call writes), starting from `stored` (the
/// user's stored attributes, if the user exists).
pub(super) fn apply(
    action: &Action,
    stored: Option<&BTreeMap<String, String>>,
    user: &mut BTreeMap<String, String>,
) {
    let prefixes = match &action.kind {
        ActionKind::Event { name } => vec![format!("events.{name}")],
        ActionKind::Purchase { product_id } => {
            vec!["purchases".to_owned(), format!("purchases.{product_id}")]
        }
    };
    for prefix in prefixes {
        let count_key = format!("{prefix}.count");
        let last_key = format!("{prefix}.last_at");
        let current = |key: &str| user.get(key).or_else(|| stored.and_then(|s| s.get(key)));
        let count = current(&count_key)
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0);
        let latest = current(&last_key)
            .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
            .map_or(action.at, |last| last.max(action.at));
        user.insert(count_key, (count + 1).to_string());
        user.insert(last_key, latest.format(&Rfc3339).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn event(name: &str, at: OffsetDateTime) -> Action {
        Action {
            external_id: "u1".into(),
            kind: ActionKind::Event { name: name.into() },
            at,
            properties: None,
        }
    }

    #[test]
    fn counts_add_up_and_the_latest_time_only_moves_forward() {
        let stored: BTreeMap<String, String> = [
            ("events.added_to_cart.count".to_owned(), "2".to_owned()),
            (
                "events.added_to_cart.last_at".to_owned(),
                "2026-12-05T10:00:00Z".to_owned(),
            ),
        ]
        .into();
        let mut user = BTreeMap::new();
        apply(
            &event("added_to_cart", datetime!(2026-12-01 10:00 UTC)),
            Some(&stored),
            &mut user,
        );
        apply(
            &event("added_to_cart", datetime!(2026-12-06 10:00 UTC)),
            Some(&stored),
            &mut user,
        );
        assert_eq!(user["events.added_to_cart.count"], "4");
        assert_eq!(user["events.added_to_cart.last_at"], "2026-12-06T10:00:00Z");
        let purchase = Action {
            external_id: "u1".into(),
            kind: ActionKind::Purchase {
                product_id: "sku-1".into(),
            },
            at: datetime!(2026-12-02 08:00 UTC),
            properties: None,
        };
        apply(&purchase, None, &mut user);
        assert_eq!(user["purchases.count"], "1");
        assert_eq!(user["purchases.sku-1.count"], "1");
        assert_eq!(user["purchases.last_at"], "2026-12-02T08:00:00Z");
    }
}
