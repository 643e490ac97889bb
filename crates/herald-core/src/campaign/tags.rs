//! Which message tags a campaign may use (docs/messenger-platform.md §1.4). Meta retired most tags
//! in two waves; a campaign naming one of them is refused with the date and the lane to use
//! instead, rather than failing per user with Graph error 100. Tags are never for promotional
//! content.

use super::spec::{MessageTag, TAGS};

/// Retired 2026-04-27: requests carrying them get error 100.
const RETIRED_2026: [&str; 3] = [
    "CONFIRMED_EVENT_UPDATE",
    "ACCOUNT_UPDATE",
    "POST_PURCHASE_UPDATE",
];

/// Retired 2020-03-04, when 17 tags were cut to 4.
const RETIRED_2020: [&str; 15] = [
    "APPLICATION_UPDATE",
    "APPOINTMENT_UPDATE",
    "CONFIRMED_EVENT_REMINDER",
    "ISSUE_RESOLUTION",
    "PAYMENT_UPDATE",
    "PERSONAL_FINANCE_UPDATE",
    "RESERVATION_UPDATE",
    "SHIPPING_UPDATE",
    "TICKET_UPDATE",
    "TRANSPORTATION_UPDATE",
    "GAME_EVENT",
    "FEATURE_FUNCTIONALITY_UPDATE",
    "COMMUNITY_ALERT",
    "NON_PROMOTIONAL_SUBSCRIPTION",
    "PAIRING_UPDATE",
];

const INSTEAD: &str = "send transactional updates as utility templates \
    (messaging_type = \"UTILITY\") and promotional content through Meta's paid Marketing \
    Messages API";

/// The tag, or a sentence saying why it cannot be used.
pub(crate) fn parse_tag(name: &str) -> Result<MessageTag, String> {
    if let Some((_, tag)) = TAGS.iter().find(|(spelling, _)| *spelling == name) {
        return Ok(*tag);
    }
    if RETIRED_2026.contains(&name) {
        return Err(format!(
            "tag `{name}` was retired by Meta on 2026-04-27 (Graph answers error 100); {INSTEAD}"
        ));
    }
    if RETIRED_2020.contains(&name) {
        return Err(format!(
            "tag `{name}` was retired by Meta on 2020-03-04; {INSTEAD}"
        ));
    }
    Err(format!(
        "unknown tag `{name}`; the tags Meta still accepts are HUMAN_AGENT (a person replying \
         by hand, up to 7 days) and CUSTOMER_FEEDBACK"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_tags_parse() {
        assert_eq!(parse_tag("HUMAN_AGENT"), Ok(MessageTag::HumanAgent));
        assert_eq!(
            parse_tag("CUSTOMER_FEEDBACK"),
            Ok(MessageTag::CustomerFeedback)
        );
    }

    #[test]
    fn retired_tags_say_when_and_what_instead() {
        for tag in RETIRED_2026 {
            let message = parse_tag(tag).unwrap_err();
            assert!(message.contains("2026-04-27"), "{message}");
            assert!(message.contains("UTILITY"), "{message}");
            assert!(message.contains("Marketing Messages"), "{message}");
        }
        for tag in RETIRED_2020 {
            let message = parse_tag(tag).unwrap_err();
            assert!(message.contains("2020-03-04"), "{message}");
            assert!(message.contains("UTILITY"), "{message}");
        }
    }

    #[test]
    fn unknown_and_miscased_tags_are_refused() {
        for tag in ["", "human_agent", "PROMOTION"] {
            let message = parse_tag(tag).unwrap_err();
            assert!(message.starts_with("unknown tag"), "{message}");
        }
    }
}
