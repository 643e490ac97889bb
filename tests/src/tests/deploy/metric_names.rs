//! Metric names in the dashboard and the Prometheus files against the one list in
//! herald-telemetry's metrics.rs, and the dashboard's PromQL parsed by promtool. The name
//! extraction is a small PromQL scanner, not a parser: promtool checks the syntax.

use std::collections::BTreeSet;

use super::{PROMTOOL, available, read, run_ok};

/// Every metric name metrics.rs declares, with `_bucket`, `_sum`, `_count` for histograms.
fn known_metrics() -> BTreeSet<String> {
    let source = read("crates/herald-telemetry/src/metrics.rs");
    let mut names = BTreeSet::new();
    for (at, _) in source.match_indices("\"herald_") {
        let name: String = source[at + 1..].chars().take_while(|c| *c != '"').collect();
        if source[..at].trim_end().ends_with("HistogramOpts::new(") {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
        names.insert(name);
    }
    assert!(
        names.len() > 10,
        "metrics.rs no longer lists metrics as literals"
    );
    names
}

/// Metric names a PromQL expression selects: identifiers outside strings, label matchers,
/// ranges and grouping clauses that are neither functions nor keywords.
fn promql_metrics(expr: &str) -> Vec<String> {
    // Aggregations may put `by (...)` between their name and their parenthesis.
    const KEYWORDS: &str = "bool and or unless offset sum min max avg count group stddev stdvar \
        topk bottomk quantile count_values limitk limit_ratio";
    const GROUPING: &str = "by without on ignoring group_left group_right";
    let is_in = |list: &str, word: &str| list.split_whitespace().any(|k| k == word);
    let chars: Vec<char> = expr.chars().collect();
    let (mut names, mut i, mut skip_group) = (Vec::new(), 0, false);
    let skip_to = |from: usize, close: char| {
        let mut j = from;
        while j < chars.len() && chars[j] != close {
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_to(i + 1, c),
            '{' => i = skip_to(i + 1, '}'),
            '[' => i = skip_to(i + 1, ']'),
            '(' if skip_group => (i, skip_group) = (skip_to(i + 1, ')'), false),
            // Numbers and durations (`0.99`, `1e3`, `5m`) and Grafana variables (`$__interval`).
            c if c.is_ascii_digit() || c == '$' => {
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_.".contains(chars[i]))
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i]))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                skip_group = is_in(GROUPING, &word);
                if !is_in(KEYWORDS, &word) && !skip_group && next != Some(&'(') {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn assert_known(names: &[String], known: &BTreeSet<String>, context: &str) {
    for name in names {
        // `up` is Prometheus' own per-target series; rabbitmq_* comes from rabbitmq_prometheus.
        let ok = known.contains(name) || name.starts_with("rabbitmq_") || name == "up";
        assert!(
            ok,
            "{context}: `{name}` is not in herald-telemetry's metrics.rs"
        );
    }
}

#[test]
fn prometheus_files_use_known_metrics() {
    let known = known_metrics();
    for file in [
        "alerts.yml",
        "alerts_test.yml",
        "prometheus.yml",
        "prometheus.compose.yml",
    ] {
        let text = read(&format!("deploy/prometheus/{file}"));
        let used: Vec<String> = text
            .match_indices("herald_")
            .filter(|(at, _)| !text[..*at].ends_with(|c: char| c.is_ascii_alphanumeric()))
            .map(|(at, _)| {
                text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect();
        assert_known(&used, &known, file);
    }
}

fn dashboard_exprs() -> (serde_json::Value, Vec<String>) {
    let text = read("deploy/grafana/dashboards/herald.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(
                target["expr"]
                    .as_str()
                    .expect("every target has an expr")
                    .to_owned(),
            );
        }
    }
    (dashboard, exprs)
}

#[test]
fn dashboard_uses_known_metrics_and_the_datasource_variable() {
    let (dashboard, exprs) = dashboard_exprs();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "the dashboard needs a `datasource` variable of type datasource"
    );
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate panel id"
        );
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or("?");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title}");
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "panel {title}"
            );
        }
    }
    let known = known_metrics();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = promql_metrics(expr);
        assert_known(&names, &known, expr);
        used.extend(names);
    }
    for required in [
        "herald_send_attempts_total",
        "herald_send_duration_seconds_bucket",
        "herald_rate_limit_per_second",
        "herald_graph_usage_ratio",
        "rabbitmq_queue_messages",
        "herald_page_halted",
        "herald_jobs_dead_lettered_total",
    ] {
        assert!(
            used.contains(required),
            "the dashboard no longer shows {required}"
        );
    }
}

#[test]
fn promql_metric_extraction() {
    let check =
        |expr: &str, expected: &[&str]| assert_eq!(promql_metrics(expr), expected, "{expr}");
    check(
        "sum by (outcome) (rate(herald_send_attempts_total[$__rate_interval]))",
        &["herald_send_attempts_total"],
    );
    check(
        "count(up{job=\"herald-worker\"} == 1) or vector(0)",
        &["up"],
    );
    check(
        "sum by (queue) (rabbitmq_queue_messages{queue=~\"herald\\\\..*\"})",
        &["rabbitmq_queue_messages"],
    );
    check("a / on (page_id) group_left b", &["a", "b"]);
    check(
        "histogram_quantile(0.99, x_bucket) > 1e3 offset 5m",
        &["x_bucket"],
    );
    check("increase(y_total[$__interval]) * $scale", &["y_total"]);
}

#[test]
fn dashboard_queries_are_valid_promql() {
    if !available(&PROMTOOL) {
        return;
    }
    // promtool has no expression checker; a rules file of recording rules is parsed in full.
    let (_, exprs) = dashboard_exprs();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m");
        let quoted = serde_json::to_string(&expr).expect("a string serialises");
        rules.push_str(&format!(
            "      - record: dashboard:query{n}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard_rules.yml");
    std::fs::write(&file, rules).expect("write rules");
    run_ok(
        "promtool",
        &["check", "rules", file.to_str().expect("utf-8 path")],
    );
}
