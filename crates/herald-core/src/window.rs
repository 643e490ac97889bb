//! The 24-hour standard messaging window as a producer policy (docs/messenger-platform.md §6):
//! RESPONSE and UPDATE may only reach users who wrote to the page in the last 24 hours. With
//! `window = "enforce"` the producer skips users it *knows* are outside, instead of spending a
//! Graph call that ends in 10/2018278.
//!
//! A user whose `last_inbound_at` is unknown is let through on purpose: a CSV or JSONL segment
//! may not carry the column, and the store only knows users who wrote since the webhook was
//! connected. Graph then has the last word: 10/2018278 classifies as "drop user", a `failed`
//! result, no retry. A job carries when its user's window closes (`window_closes`), so a job
//! that waits in the queue past it is skipped by the worker instead of sent.

use std::time::Duration;

use time::OffsetDateTime;

use crate::campaign::{Campaign, MessagingType, WindowPolicy};
use crate::skip::SkipReason;
use crate::user::User;

/// The standard messaging window.
pub const STANDARD_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// `Err(OutsideWindow)` when the policy is `enforce`, the type is RESPONSE or UPDATE, and the
/// user's last inbound message is known to be 24 hours old or more at `now`. Everything else
/// passes, including MESSAGE_TAG and UTILITY (which have their own rules at Graph) and users
/// whose last inbound time is unknown or in the future (clock skew).
pub fn window_check(
    campaign: &Campaign,
    user: &User,
    now: OffsetDateTime,
) -> Result<(), SkipReason> {
    match window_closes(campaign, user) {
        Some(closes) if closes <= now => Err(SkipReason::OutsideWindow),
        _ => Ok(()),
    }
}

/// When the user's window closes, if the policy is `enforce`, the type is RESPONSE or UPDATE
/// and the user's last inbound message is known: 24 hours after it. The producer checks it
/// when it plans the job, and the job carries it so the worker checks it again when it sends.
pub fn window_closes(campaign: &Campaign, user: &User) -> Option<OffsetDateTime> {
    if campaign.delivery().window == WindowPolicy::Off {
        return None;
    }
    match campaign.messaging_type() {
        MessagingType::Response | MessagingType::Update => {}
        MessagingType::MessageTag | MessagingType::Utility => return None,
    }
    Some(user.last_inbound_at? + STANDARD_WINDOW)
}

/// The attribute that marks a user who stopped this page's messages. The store sets it from
/// Meta's marketing stop events; a file segment may carry it as a column.
pub const OPTED_OUT_ATTRIBUTE: &str = "opted_out";

/// The producer's policy guard before rendering, in order: a blank or whitespace PSID
/// (`BlankPsid`), an opted-out user (`OptedOut`: the `opted_out` attribute is `true`), then the
/// window (`OutsideWindow`). Duplicates need state the producer holds, so it checks those.
pub fn admit(campaign: &Campaign, user: &User, now: OffsetDateTime) -> Result<(), SkipReason> {
    if user.psid().is_none() {
        return Err(SkipReason::BlankPsid);
    }
    let opted_out = user.attributes.get(OPTED_OUT_ATTRIBUTE);
    if opted_out.is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
        return Err(SkipReason::OptedOut);
    }
    window_check(campaign, user, now)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn campaign(messaging_type: &str, window: &str) -> Campaign {
        let tag = if messaging_type == "MESSAGE_TAG" {
            "tag = \"HUMAN_AGENT\""
        } else {
            ""
        };
        let source = format!(
            "id = \"w\"\npage_id = \"1\"\nmessaging_type = \"{messaging_type}\"\n{tag}\n\
             [message]\ntext = \"hi\"\n[delivery]\nwindow = \"{window}\"\n"
        );
        Campaign::from_toml(&source).unwrap()
    }

    #[test]
    fn admit_checks_psid_then_opt_out_then_window() {
        let now = datetime!(2026-05-01 12:00 UTC);
        let update = campaign("UPDATE", "enforce");
        let stale = Some(datetime!(2026-04-29 12:00 UTC));
        let user = |psid: &str, opted: Option<&str>, last: Option<OffsetDateTime>| {
            let mut user = User::new("u", psid);
            user.last_inbound_at = last;
            if let Some(opted) = opted {
                user = user.with_attr(OPTED_OUT_ATTRIBUTE, opted);
            }
            user
        };
        let table = [
            (user(" ", Some("true"), stale), Err(SkipReason::BlankPsid)),
            (user("1", Some("true"), stale), Err(SkipReason::OptedOut)),
            (user("1", Some(" TRUE "), None), Err(SkipReason::OptedOut)),
            (
                user("1", Some("false"), stale),
                Err(SkipReason::OutsideWindow),
            ),
            (user("1", Some("false"), None), Ok(())),
            (user("1", None, None), Ok(())),
        ];
        for (user, expected) in table {
            assert_eq!(admit(&update, &user, now), expected);
        }
    }

    /// The time a job carries: 24 hours after the last inbound message, only where the
    /// producer would check the window itself.
    #[test]
    fn the_window_closes_a_day_after_the_last_message() {
        let last = datetime!(2026-04-30 09:30 UTC);
        let user = User {
            last_inbound_at: Some(last),
            ..User::new("u", "42")
        };
        let closes = |messaging_type: &str, window: &str| {
            window_closes(&campaign(messaging_type, window), &user)
        };
        assert_eq!(
            closes("UPDATE", "enforce"),
            Some(datetime!(2026-05-01 09:30 UTC))
        );
        assert_eq!(
            closes("RESPONSE", "enforce"),
            Some(datetime!(2026-05-01 09:30 UTC))
        );
        assert_eq!(closes("UPDATE", "off"), None);
        assert_eq!(closes("MESSAGE_TAG", "enforce"), None);
        let unknown = User::new("u", "42");
        assert_eq!(
            window_closes(&campaign("UPDATE", "enforce"), &unknown),
            None
        );
    }

    #[test]
    fn window_table() {
        let now = datetime!(2026-05-01 12:00 UTC);
        let inside = Some(datetime!(2026-04-30 12:00:01 UTC));
        let edge = Some(datetime!(2026-04-30 12:00 UTC));
        let outside = Some(datetime!(2026-04-29 12:00 UTC));
        let future = Some(datetime!(2026-05-01 13:00 UTC));
        let check = |messaging_type: &str, window: &str, last: Option<OffsetDateTime>, ok: bool| {
            let user = User {
                last_inbound_at: last,
                ..User::new("u", "42")
            };
            let result = window_check(&campaign(messaging_type, window), &user, now);
            let expected = if ok {
                Ok(())
            } else {
                Err(SkipReason::OutsideWindow)
            };
            assert_eq!(result, expected, "{messaging_type} {window} {last:?}");
        };
        for messaging_type in ["RESPONSE", "UPDATE"] {
            check(messaging_type, "enforce", None, true);
            check(messaging_type, "enforce", inside, true);
            check(messaging_type, "enforce", future, true);
            check(messaging_type, "enforce", edge, false);
            check(messaging_type, "enforce", outside, false);
            check(messaging_type, "off", outside, true);
        }
        check("MESSAGE_TAG", "enforce", outside, true);
        check("UTILITY", "enforce", outside, true);
    }

    #[test]
    fn admit_checks_psid_first() {
        let now = datetime!(2026-05-01 12:00 UTC);
        let campaign = campaign("UPDATE", "enforce");
        let old = datetime!(2026-01-01 0:00 UTC);
        for psid in [None, Some(""), Some("  \t")] {
            let user = User {
                messenger_id: psid.map(str::to_owned),
                last_inbound_at: Some(old),
                ..User::default()
            };
            assert_eq!(
                admit(&campaign, &user, now),
                Err(SkipReason::BlankPsid),
                "{psid:?}"
            );
        }
        let user = User::new("u", "42").with_last_inbound_at(old);
        assert_eq!(admit(&campaign, &user, now), Err(SkipReason::OutsideWindow));
        assert_eq!(admit(&campaign, &User::new("u", "42"), now), Ok(()));
    }
}
