//! The validation table: every kind of problem, its path, kind, exit code and position.

use super::super::doc::LineIndex;
use super::BASE;
use crate::campaign::*;

/// One row per problem: edit `BASE` (replace `from` with `to`), expect exactly one problem at
/// `path`, of `kind`, located at the first occurrence of `at` in the edited source (`None`: no
/// line).
#[test]
fn every_problem_is_reported_with_its_path_and_kind() {
    use ProblemKind::{Data, Usage};
    #[rustfmt::skip]
    let rows: &[(&str, &str, &str, ProblemKind, Option<&str>)] = &[
        // The file's shape (exit 64).
        ("page_id = \"1000000001\"", "page_id = \"1000000001\"\ncolour = \"red\"", "colour", Usage, Some("colour")),
        ("rate_per_sec = 250", "rate = 250", "delivery.rate", Usage, Some("rate =")),
        ("match = \"all\"", "matches = \"all\"", "segment.matches", Usage, Some("matches")),
        ("op = \"eq\"", "op = \"eq\"\noperator = \"eq\"", "segment.filter[0].operator", Usage, Some("operator")),
        ("{ attribute = \"plan\",", "{ attribute = \"plan\", case = \"x\",", "segment.filter[2].group.filter[0].case", Usage, Some("case")),
        ("group = { match = \"any\",", "attribute = \"x\"\ngroup = { match = \"any\",", "segment.filter[2].attribute", Usage, Some("attribute = \"x\"")),
        ("id = \"welcome-back\"", "id = 7", "id", Usage, Some("7")),
        ("page_id = \"1000000001\"", "page_id = 1000000001", "page_id", Usage, Some("1000000001")),
        ("max_attempts = 5", "max_attempts = \"5\"", "delivery.max_attempts", Usage, Some("\"5\"")),
        ("rate_per_sec = 250", "rate_per_sec = 2.5", "delivery.rate_per_sec", Usage, Some("2.5")),
        ("window = \"enforce\"", "window = true", "delivery.window", Usage, Some("true")),
        ("attribute = \"country\"", "attribute = 1", "segment.filter[0].attribute", Usage, Some("1\nop")),
        ("id = \"welcome-back\"\n", "", "id", Usage, None),
        ("messaging_type = \"UPDATE\"\n", "", "messaging_type", Usage, None),
        ("op = \"eq\"\n", "", "segment.filter[0].op", Usage, Some("[[segment.filter]]")),
        ("  { attribute = \"plan\", op = \"in\",", "  { op = \"in\",", "segment.filter[2].group.filter[0].attribute", Usage, Some("{ op")),
        ("window = \"enforce\"", "window = enforce", "", Usage, Some("enforce\n")),
        // Values that break rules (exit 65).
        ("id = \"welcome-back\"", "id = \"Welcome Back\"", "id", Data, Some("\"Welcome Back\"")),
        ("id = \"welcome-back\"", "id = \"\"", "id", Data, Some("\"\"")),
        ("id = \"welcome-back\"", &format!("id = \"{}\"", "a".repeat(65)), "id", Data, Some("\"aaa")),
        ("page_id = \"1000000001\"", "page_id = \"10000a\"", "page_id", Data, Some("\"10000a\"")),
        ("messaging_type = \"UPDATE\"", "messaging_type = \"PROMO\"", "messaging_type", Data, Some("\"PROMO\"")),
        ("messaging_type = \"UPDATE\"", "messaging_type = \"update\"", "messaging_type", Data, Some("\"update\"")),
        ("messaging_type = \"UPDATE\"", "messaging_type = \"UPDATE\"\ntag = \"HUMAN_AGENT\"", "tag", Data, Some("\"HUMAN_AGENT\"")),
        ("messaging_type = \"UPDATE\"", "messaging_type = \"MESSAGE_TAG\"", "tag", Data, Some("\"MESSAGE_TAG\"")),
        ("messaging_type = \"UPDATE\"", "messaging_type = \"MESSAGE_TAG\"\ntag = \"ACCOUNT_UPDATE\"", "tag", Data, Some("\"ACCOUNT_UPDATE\"")),
        ("messaging_type = \"UPDATE\"", "messaging_type = \"MESSAGE_TAG\"\ntag = \"SHIPPING_UPDATE\"", "tag", Data, Some("\"SHIPPING_UPDATE\"")),
        ("messaging_type = \"UPDATE\"", "messaging_type = \"MESSAGE_TAG\"\ntag = \"PROMO\"", "tag", Data, Some("\"PROMO\"")),
        ("messaging_type = \"UPDATE\"", "messaging_type = \"UPDATE\"\nnotification_type = \"LOUD\"", "notification_type", Data, Some("\"LOUD\"")),
        ("default: 'there' }}\"", "default: 'there' \"", "message.text", Data, Some("\"Hi {{")),
        ("default: 'there' }}\"", "default: 'there' | shout }}\"", "message.text", Data, Some("\"Hi {{")),
        ("title = \"No\"", "title = \"{% if %}\"", "message.quick_replies[1].title", Data, Some("\"{% if %}\"")),
        ("title = \"No\"", "title = \"{% include 'x' %}\"", "message.quick_replies[1].title", Data, Some("\"{% include")),
        ("text = \"Hi {{", &format!("text = \"{} {{{{", "a".repeat(2000)), "message.text", Data, Some("\"aaa")),
        ("title = \"No\"", "title = \"No, no, no, no, no, thanks\"", "message.quick_replies[1].title", Data, Some("\"No, no")),
        ("payload = \"NO\" },", &format!("payload = \"NO\" }},\n{}", "{ content_type = \"text\", title = \"x\", payload = \"x\" },\n".repeat(12)), "message.quick_replies", Data, Some("[\n  { content_type")),
        ("[message]\n", "[message]\nmetadata = \"mine\"\n", "message.metadata", Data, Some("\"mine\"")),
        ("op = \"eq\"", "op = \"equals\"", "segment.filter[0].op", Data, Some("\"equals\"")),
        ("attribute = \"country\"", "attribute = \" \"", "segment.filter[0].attribute", Data, Some("\" \"")),
        ("value = \"7d\"", "value = \"7 days\"", "segment.filter[2].group.filter[1].value", Data, Some("\"7 days\"")),
        ("value = \"7d\"", "value = 7", "segment.filter[2].group.filter[1].value", Data, Some("7 }")),
        ("value = [\"pro\", \"team\"]", "value = \"pro\"", "segment.filter[2].group.filter[0].value", Data, Some("\"pro\"")),
        ("value = [\"pro\", \"team\"]", "value = []", "segment.filter[2].group.filter[0].value", Data, Some("[]")),
        ("value = [\"pro\", \"team\"]", "value = [\"pro\", [\"team\"]]", "segment.filter[2].group.filter[0].value[1]", Data, Some("[\"team\"]")),
        ("value = \"BR\"", "value = [\"BR\"]", "segment.filter[0].value", Data, Some("[\"BR\"]")),
        ("value = \"BR\"", "value = { a = 1 }", "segment.filter[0].value", Data, Some("{ a")),
        ("op = \"eq\"", "op = \"exists\"", "segment.filter[0].value", Data, Some("\"BR\"")),
        ("value = \"BR\"\n", "", "segment.filter[0].value", Data, Some("\"eq\"")),
        ("match = \"all\"", "match = \"every\"", "segment.match", Data, Some("\"every\"")),
        ("group = { match = \"any\"", "group = { match = \"some\"", "segment.filter[2].group.match", Data, Some("\"some\"")),
        ("file = \"users.csv\"", "file = \"users.csv\"\nsource = \"store\"", "segment.file", Data, Some("\"users.csv\"")),
        ("file = \"users.csv\"", "source = \"db\"", "segment.source", Data, Some("\"db\"")),
        ("file = \"users.csv\"", "file = \"\"", "segment.file", Data, Some("\"\"")),
        ("rate_per_sec = 250", "rate_per_sec = 0", "delivery.rate_per_sec", Data, Some("0\nmax_attempts")),
        ("rate_per_sec = 250", "rate_per_sec = -5", "delivery.rate_per_sec", Data, Some("-5")),
        ("max_attempts = 5", "max_attempts = 21", "delivery.max_attempts", Data, Some("21")),
        ("max_attempts = 5", "max_attempts = 0", "delivery.max_attempts", Data, Some("0\nexpires_after")),
        ("expires_after = \"6h\"", "expires_after = \"6 hours\"", "delivery.expires_after", Data, Some("\"6 hours\"")),
        ("expires_after = \"6h\"", "expires_after = \"0s\"", "delivery.expires_after", Data, Some("\"0s\"")),
        ("expires_after = \"6h\"", "expires_after = \"3mo\"", "delivery.expires_after", Data, Some("\"3mo\"")),
        ("window = \"enforce\"", "window = \"strict\"", "delivery.window", Data, Some("\"strict\"")),
    ];
    for (from, to, path, kind, at) in rows {
        assert!(BASE.contains(from), "row {path}: `{from}` is not in BASE");
        let source = BASE.replacen(from, to, 1);
        let errors = match Campaign::from_toml(&source) {
            Ok(_) => panic!("row {path}: accepted\n{source}"),
            Err(errors) => errors,
        };
        let problems = errors.problems();
        assert_eq!(
            problems.len(),
            1,
            "row {path}: expected one problem, got\n{errors}"
        );
        let problem = &problems[0];
        assert_eq!(problem.path, *path, "{errors}");
        assert_eq!(problem.kind, *kind, "row {path}: {errors}");
        let expected_code = if *kind == Usage {
            EXIT_USAGE
        } else {
            EXIT_DATA
        };
        assert_eq!(errors.exit_code(), expected_code, "row {path}");
        let expected_at = at.map(|marker| {
            let offset = source
                .find(marker)
                .unwrap_or_else(|| panic!("row {path}: no `{marker}`"));
            LineIndex::new(&source).line_col(offset)
        });
        assert_eq!(problem.line_col, expected_at, "row {path}: {errors}");
        assert!(!problem.message.is_empty());
    }
}

#[test]
fn problem_messages_explain() {
    let check = |from: &str, to: &str, needles: &[&str]| {
        let source = BASE.replacen(from, to, 1);
        let errors = Campaign::from_toml(&source).unwrap_err();
        let text = errors.to_string();
        for needle in needles {
            assert!(text.contains(needle), "`{needle}` not in: {text}");
        }
    };
    check(
        "messaging_type = \"UPDATE\"",
        "messaging_type = \"MESSAGE_TAG\"\ntag = \"POST_PURCHASE_UPDATE\"",
        &[
            "4:7: tag:",
            "retired",
            "2026-04-27",
            "UTILITY",
            "Marketing Messages",
        ],
    );
    check(
        "default: 'there' }}\"",
        "default: 'there' \"",
        &["6:8: message.text: Liquid syntax error at 1:29 of the template"],
    );
    check(
        "rate_per_sec = 250",
        "rate = 250",
        &["unknown key `rate`", "rate_per_sec"],
    );
    check(
        "max_attempts = 5",
        "max_attempts = 50",
        &["between 1 and 20, got 50"],
    );
    check(
        "page_id = \"1000000001\"",
        "page_id = 1000000001",
        &["write page_id = \"1000000001\""],
    );
    check(
        "op = \"eq\"",
        "op = \"like\"",
        &["unknown op `like`", "older_than"],
    );
    check("value = \"BR\"", "value = [\"BR\"]", &["use `in`"]);
    check("value = \"7d\"", "value = \"7 days\"", &["not a duration"]);
}

#[test]
fn all_problems_are_listed_at_once() {
    let source = r#"id = "Bad Id"
page_id = "abc"
messaging_type = "UPDATE"
tag = "SHIPPING_UPDATE"
colour = "red"

[message]
text = "{{ oops "
metadata = "x"

[segment]
match = "most"
[[segment.filter]]
attribute = "a"
op = "nope"

[delivery]
max_attempts = 99
expires_after = "soon"
speed = 3
"#;
    let errors = Campaign::from_toml(source).unwrap_err();
    let found: Vec<(&str, Option<(usize, usize)>)> = errors
        .problems()
        .iter()
        .map(|p| (p.path.as_str(), p.line_col))
        .collect();
    assert_eq!(
        found,
        [
            ("id", Some((1, 6))),
            ("page_id", Some((2, 11))),
            ("tag", Some((4, 7))),
            ("tag", Some((4, 7))),
            ("colour", Some((5, 1))),
            ("message.text", Some((8, 8))),
            ("message.metadata", Some((9, 12))),
            ("segment.match", Some((12, 9))),
            ("segment.filter[0].op", Some((15, 6))),
            ("delivery.max_attempts", Some((18, 16))),
            ("delivery.expires_after", Some((19, 17))),
            ("delivery.speed", Some((20, 1))),
        ],
        "{errors}"
    );
    assert_eq!(errors.exit_code(), EXIT_USAGE);
    assert_eq!(errors.to_string().lines().count(), errors.problems().len());
}

#[test]
fn syntax_errors_are_usage_with_position() {
    let errors = Campaign::from_toml("id = \"a\"\npage_id = \n").unwrap_err();
    assert_eq!(errors.exit_code(), EXIT_USAGE);
    let problem = &errors.problems()[0];
    assert_eq!(problem.path, "");
    assert_eq!(problem.line_col.map(|(line, _)| line), Some(2));
    assert!(
        problem.message.starts_with("TOML syntax error"),
        "{problem}"
    );
    let errors = Campaign::from_json("{\n  \"id\": \"a\",\n}").unwrap_err();
    assert_eq!(errors.exit_code(), EXIT_USAGE);
    assert_eq!(errors.problems()[0].line_col, Some((3, 1)));
    let not_a_list = r#"{"id": "a", "page_id": "1", "messaging_type": "UPDATE",
        "message": {"text": "x"}, "segment": {"filter": {"attribute": "a"}}}"#;
    let errors = Campaign::from_json(not_a_list).unwrap_err();
    assert_eq!(errors.problems().len(), 1, "{errors}");
    assert_eq!(errors.problems()[0].path, "segment.filter");
    assert_eq!(
        errors.problems()[0].message,
        "expected a list, found a table"
    );
    let errors = Campaign::from_json("[1, 2]").unwrap_err();
    assert_eq!(
        errors.problems()[0].message,
        "expected a table, found a list"
    );
}

#[test]
fn limits_are_checked_even_when_another_string_does_not_compile() {
    let source = BASE
        .replacen("default: 'there' }}\"", "default: 'there' \"", 1)
        .replacen(
            "title = \"No\"",
            "title = \"No, no, no, no, no, thanks\"",
            1,
        );
    let errors = Campaign::from_toml(&source).unwrap_err();
    let paths: Vec<&str> = errors.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["message.text", "message.quick_replies[1].title"],
        "{errors}"
    );
    assert_eq!(errors.exit_code(), EXIT_DATA);
}
