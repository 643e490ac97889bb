//! Every op on a fixed user at a fixed `now`: numbers vs strings, dates, relative durations,
//! nested groups.

use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;

use super::*;

const NOW: OffsetDateTime = datetime!(2026-05-01 12:00 UTC);

fn user() -> User {
    User::new("ext-1", "42")
        .with_last_inbound_at(datetime!(2026-04-30 18:00 UTC))
        .with_attr("country", "BR")
        .with_attr("age", "30")
        .with_attr("score", "9.5")
        .with_attr("version", "10")
        .with_attr("zip", "02134")
        .with_attr("signed_up", "2026-04-20")
        .with_attr("renewed_at", "2026-04-30T09:00:00-03:00")
        .with_attr("email", "ana@example.com")
        .with_attr("colors", r#"["red","blue",7]"#)
        .with_attr("blank", "   ")
        .with_attr("empty", "")
}

fn cond(attribute: &str, op: Op) -> Filter {
    Filter::Condition(Condition {
        attribute: Attribute::from_name(attribute),
        op,
    })
}

fn o(text: &str) -> Operand {
    Operand::new(text)
}

const H: u64 = 3600;
const D: u64 = 24 * H;

/// Each row: attribute, op, whether `user()` matches at `NOW`.
#[test]
fn ops_table() {
    let check = |attribute: &str, op: Op, expected: bool| {
        let description = format!("{attribute} {op:?}");
        let filter = cond(attribute, op);
        assert_eq!(filter.matches(&user(), NOW), expected, "{description}");
    };
    // exists / blank: missing, empty and whitespace are all blank.
    check("country", Op::Exists, true);
    check("missing", Op::Exists, false);
    check("blank", Op::Exists, false);
    check("empty", Op::Exists, false);
    check("missing", Op::Blank, true);
    check("blank", Op::Blank, true);
    check("empty", Op::Blank, true);
    check("country", Op::Blank, false);
    check("last_inbound_at", Op::Exists, true);
    check("psid", Op::Exists, true);
    // eq / neq: strings exact and case-sensitive; numbers as numbers.
    check("country", Op::Eq(o("BR")), true);
    check("country", Op::Eq(o("br")), false);
    check("missing", Op::Eq(o("BR")), false);
    check("country", Op::Neq(o("AR")), true);
    check("country", Op::Neq(o("BR")), false);
    check("missing", Op::Neq(o("BR")), true);
    check("age", Op::Eq(o("30.0")), true);
    check("zip", Op::Eq(o("2134")), true);
    check("external_id", Op::Eq(o("ext-1")), true);
    check("messenger_id", Op::Eq(o("42")), true);
    check("psid", Op::Eq(o("42")), true);
    // in
    check("country", Op::In(vec![o("AR"), o("BR")]), true);
    check("country", Op::In(vec![o("AR"), o("CL")]), false);
    check("age", Op::In(vec![o("29"), o("30")]), true);
    check("missing", Op::In(vec![o("")]), false);
    // contains: substring, case-sensitive.
    check("email", Op::Contains("@example.".into()), true);
    check("email", Op::Contains("EXAMPLE".into()), false);
    check("missing", Op::Contains("".into()), false);
    check("last_inbound_at", Op::Contains("2026-04-30".into()), true);
    // contains on a JSON array (a nested value from /users/track): one element is the value.
    check("colors", Op::Contains("red".into()), true);
    check("colors", Op::Contains("re".into()), false);
    check("colors", Op::Contains("7".into()), true);
    // gt/gte/lt/lte: numbers compare as numbers ("10" > "9"), not as strings.
    check("version", Op::Gt(o("9")), true);
    check("version", Op::Lt(o("9")), false);
    check("age", Op::Gte(o("30")), true);
    check("age", Op::Gt(o("30")), false);
    check("age", Op::Lte(o("30")), true);
    check("age", Op::Lt(o("30.5")), true);
    check("score", Op::Gt(o("9.25")), true);
    check("missing", Op::Lt(o("100")), false);
    // ...strings compare as strings when either side is not a number.
    check("country", Op::Gt(o("AR")), true);
    check("country", Op::Lt(o("AR")), false);
    check("age", Op::Gt(o("abc")), false);
    // ...dates as dates: YYYY-MM-DD against RFC 3339 with offsets.
    check("signed_up", Op::Gte(o("2026-04-20")), true);
    check("signed_up", Op::Gt(o("2026-04-19T23:59:59Z")), true);
    check("signed_up", Op::Lt(o("2026-04-20T00:00:01+00:00")), true);
    check("renewed_at", Op::Eq(o("2026-04-30T12:00:00Z")), true);
    check("renewed_at", Op::Gt(o("2026-04-30")), true);
    check("last_inbound_at", Op::Gt(o("2026-04-30T17:59:59Z")), true);
    check("last_inbound_at", Op::Lte(o("2026-04-30")), false);
    check(
        "last_inbound_at",
        Op::Eq(o("2026-04-30T15:00:00-03:00")),
        true,
    );
    // within / older_than relative to NOW.
    check(
        "last_inbound_at",
        Op::Within(Duration::from_secs(24 * H)),
        true,
    );
    check(
        "last_inbound_at",
        Op::Within(Duration::from_secs(18 * H)),
        true,
    );
    check(
        "last_inbound_at",
        Op::Within(Duration::from_secs(17 * H)),
        false,
    );
    check(
        "last_inbound_at",
        Op::OlderThan(Duration::from_secs(17 * H)),
        true,
    );
    check(
        "last_inbound_at",
        Op::OlderThan(Duration::from_secs(18 * H)),
        false,
    );
    check("signed_up", Op::Within(Duration::from_secs(7 * D)), false);
    check(
        "signed_up",
        Op::Within(Duration::from_secs(2 * 7 * D)),
        true,
    );
    check("signed_up", Op::OlderThan(Duration::from_secs(7 * D)), true);
    check(
        "renewed_at",
        Op::Within(Duration::from_secs(30 * 60)),
        false,
    );
    check("renewed_at", Op::Within(Duration::from_secs(D)), true);
    check("missing", Op::Within(Duration::from_secs(7 * D)), false);
    check("missing", Op::OlderThan(Duration::from_secs(7 * D)), false);
    check("country", Op::Within(Duration::from_secs(7 * D)), false);
    // A cut-off before the earliest date: everything is within, nothing older.
    check("signed_up", Op::Within(Duration::from_secs(u64::MAX)), true);
    check(
        "signed_up",
        Op::OlderThan(Duration::from_secs(u64::MAX)),
        false,
    );
}

#[test]
fn future_dates_are_within() {
    let future = User::new("u", "1").with_attr("at", "2026-06-01");
    assert!(cond("at", Op::Within(Duration::from_secs(D))).matches(&future, NOW));
    assert!(!cond("at", Op::OlderThan(Duration::from_secs(D))).matches(&future, NOW));
}

#[test]
fn groups_combine_and_nest() {
    let br = cond("country", Op::Eq(o("BR")));
    let ar = cond("country", Op::Eq(o("AR")));
    let adult = cond("age", Op::Gte(o("18")));
    let group = |matching: Match, filters: Vec<Filter>| FilterGroup { matching, filters };
    let check = |group: FilterGroup, expected: bool| {
        assert_eq!(group.matches(&user(), NOW), expected, "{group:?}");
    };
    check(group(Match::All, vec![]), true);
    check(group(Match::Any, vec![]), true);
    check(group(Match::All, vec![br.clone(), adult.clone()]), true);
    check(group(Match::All, vec![ar.clone(), adult.clone()]), false);
    check(group(Match::Any, vec![ar.clone(), adult.clone()]), true);
    check(group(Match::Any, vec![ar.clone()]), false);
    // adult AND (AR OR BR)
    let nested = Filter::Group(group(Match::Any, vec![ar.clone(), br.clone()]));
    check(group(Match::All, vec![adult.clone(), nested.clone()]), true);
    // AR OR (adult AND NOT-BR)
    let not_br = cond("country", Op::Neq(o("BR")));
    let inner = Filter::Group(group(Match::All, vec![adult, not_br]));
    check(group(Match::Any, vec![ar, inner]), false);
    // Three levels deep.
    let deep = Filter::Group(group(
        Match::All,
        vec![nested, Filter::Group(group(Match::Any, vec![br]))],
    ));
    check(group(Match::All, vec![deep]), true);
}

#[test]
fn operands_parse_once() {
    assert_eq!(o("10").number, Some(10.0));
    assert_eq!(o("NaN").number, None);
    assert_eq!(o("inf").number, None);
    assert_eq!(o("2026-04-20").date, Some(datetime!(2026-04-20 0:00 UTC)));
    assert_eq!(
        o("2026-04-20T10:00:00+02:00").date,
        Some(datetime!(2026-04-20 8:00 UTC))
    );
    assert_eq!(o("20/04/2026").date, None);
    assert_eq!(o("BR").as_str(), "BR");
}
