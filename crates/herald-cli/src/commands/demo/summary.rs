//! The demo's summary table (outcomes by kind, achieved rate against the page limit, send
//! latency) and what to try next. Latency quantiles come from the workers' own
//! `herald_send_duration_seconds` histogram, estimated within buckets as Prometheus's
//! `histogram_quantile` does, from the same text a Prometheus scrape reads.

use std::collections::BTreeMap;
use std::time::Duration;

use super::sample::{PAGE_ID, PAGE_TOKEN, Sample};
use crate::commands::deliver::Delivered;
use crate::commands::text::out;
use crate::commands::text::thousands;

/// The histogram the workers fill, one observation per Graph call.
const SEND_DURATION: &str = "herald_send_duration_seconds_bucket";

/// Everything the summary shows.
pub(crate) struct Report<'a> {
    pub(crate) sample: &'a Sample,
    pub(crate) done: &'a Delivered,
    /// `embedded queue` or `RabbitMQ`.
    pub(crate) broker: &'a str,
    pub(crate) workers: usize,
    pub(crate) page_ceiling: u32,
    /// The simulator's highest accepted calls for the page in any 1-second span.
    pub(crate) busiest_second: Option<u32>,
    /// Prometheus text of every worker.
    pub(crate) metrics: &'a [String],
    pub(crate) wall: Duration,
}

pub(crate) fn print(report: &Report<'_>) {
    let tally = &report.done.tally;
    out("");
    out(&format!(
        "Herald demo: {} users through {} ({} worker(s)), page limit {}/s",
        thousands(report.sample.users),
        report.broker,
        report.workers,
        thousands(u64::from(report.page_ceiling))
    ));
    out("");
    let mut rows: Vec<(String, u64)> = Vec::new();
    for (status, count) in &tally.by_status {
        if !matches!(*status, "skipped" | "failed" | "dead") {
            rows.push(((*status).to_owned(), *count));
        }
    }
    for (key, count) in &tally.failed {
        let (status, code) = key.split_once('.').unwrap_or((key, "?"));
        rows.push((format!("{status} (code {code})"), *count));
    }
    for (reason, count) in &tally.skipped {
        rows.push((format!("skipped: {reason}"), *count));
    }
    out(&format!("  {:<32}{:>8}", "outcome", "users"));
    for (label, count) in &rows {
        out(&format!("  {label:<32}{:>8}", thousands(*count)));
    }
    out(&format!("  {:<32}{:>8}", "total", thousands(tally.total())));
    out("");
    match achieved_rate(report) {
        Some((rate, secs)) => {
            out(&format!(
                "  achieved rate     {}/s over {secs:.1} s of first attempts: {:.0} % of the {}/s page limit",
                thousands(rate.round() as u64),
                rate * 100.0 / f64::from(report.page_ceiling),
                thousands(u64::from(report.page_ceiling))
            ));
            out("                    (the workers pace the page at 98 % of its limit)");
        }
        None => out("  achieved rate     too few sends to measure"),
    }
    if let Some(busiest) = report.busiest_second {
        out(&format!(
            "  busiest second    {} calls accepted by the simulator (limit {})",
            thousands(u64::from(busiest)),
            thousands(u64::from(report.page_ceiling))
        ));
    }
    match (
        quantile(report.metrics, 0.5),
        quantile(report.metrics, 0.99),
    ) {
        (Some(p50), Some(p99)) => out(&format!(
            "  send latency      p50 {:.0} ms, p99 {:.0} ms (herald_send_duration_seconds)",
            p50 * 1e3,
            p99 * 1e3
        )),
        _ => out("  send latency      no Graph calls were measured"),
    }
    out(&format!(
        "  retried           {} job(s) sent on a later attempt (they waited in the 5 s retry tier)",
        thousands(tally.retried)
    ));
    out(&format!(
        "  wall time         {:.1} s",
        report.wall.as_secs_f64()
    ));
}

/// Graph calls per second while first attempts were being made: every job that reached Graph
/// had its first attempt in that span.
fn achieved_rate(report: &Report<'_>) -> Option<(f64, f64)> {
    let tally = &report.done.tally;
    let (first, last) = tally.first_attempts?;
    let secs = (last - first).as_seconds_f64();
    (secs >= 0.5).then(|| (tally.graph_jobs as f64 / secs, secs))
}

/// The `q` quantile of the send-duration histograms of all workers, in seconds.
pub(crate) fn quantile(metrics: &[String], q: f64) -> Option<f64> {
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for text in metrics {
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(SEND_DURATION) else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            let Some(le) = labels
                .split("le=\"")
                .nth(1)
                .and_then(|l| l.split('"').next())
            else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = value.trim().parse().ok()?;
            // Keyed by the bound's bits: bounds are positive, so their order is kept.
            let entry = buckets.entry(bound.to_bits()).or_insert((bound, 0.0));
            entry.1 += count;
        }
    }
    let total = buckets.values().last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (bound, count) in buckets.into_values() {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let within = if count > below {
                (rank - below) / (count - below)
            } else {
                1.0
            };
            return Some(lower + (bound - lower) * within);
        }
        (lower, below) = (bound, count);
    }
    Some(lower)
}

/// What to do after the demo.
pub(crate) fn next_steps(sample: &Sample) {
    let (campaign, segment) = (sample.campaign.display(), sample.segment.display());
    out("");
    out("Try next (`herald` is `cargo run --release -p herald-cli --` until installed):");
    out(&format!(
        "  - Your own page, same machine: set HERALD_PAGE_TOKEN_<PAGE_ID> and edit page_id, then\n    \
         herald run {campaign} --segment {segment}\n    \
         (HERALD_GRAPH_URL defaults to the real Graph API, https://graph.facebook.com)"
    ));
    out(&format!(
        "  - The same against a simulator you keep running: `herald sim --token {PAGE_ID}={PAGE_TOKEN}`,\n    \
         then HERALD_GRAPH_URL=http://127.0.0.1:8900 HERALD_PAGE_TOKEN_{PAGE_ID}={PAGE_TOKEN} herald run {campaign}"
    ));
    out(
        "  - Through RabbitMQ with worker processes: herald demo --amqp amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    out(
        "  - A fleet: `docker compose up --build` (RabbitMQ, PostgreSQL, three workers, herald serve,\n    \
         Prometheus, Grafana), or `kubectl apply -k deploy/k8s`; see README.md, \"Run a fleet\"",
    );
    out("  - The tests: ./scripts/test");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets_across_workers() {
        let text = |a: u32, b: u32, c: u32| {
            format!(
                "# TYPE herald_send_duration_seconds histogram\n\
                 {SEND_DURATION}{{le=\"0.01\"}} {a}\n\
                 {SEND_DURATION}{{le=\"0.02\"}} {b}\n\
                 {SEND_DURATION}{{le=\"+Inf\"}} {c}\n\
                 herald_send_duration_seconds_count {c}\n"
            )
        };
        // Two workers: 0 below 10 ms, 100 in 10..20 ms, none above.
        let metrics = [text(0, 60, 60), text(0, 40, 40)];
        let check = |q: f64, expected: f64| {
            let got = quantile(&metrics, q).unwrap();
            assert!((got - expected).abs() < 1e-9, "q{q}: {got}");
        };
        check(0.5, 0.015);
        check(0.99, 0.0199);
        // Everything above the last finite bound: the bound is the best estimate.
        assert_eq!(quantile(&[text(0, 0, 5)], 0.5), Some(0.02));
        assert_eq!(quantile(&[text(0, 0, 0)], 0.5), None);
        assert_eq!(quantile(&[], 0.5), None);
    }
}
