//! `render`: a run's report as the table `herald campaign status` prints (without `--json`).
//! Every figure of the JSON object is there, in the order an operator reads them.

use std::fmt::Write;

use time::format_description::well_known::Rfc3339;

use super::RunReport;

/// The report as aligned `label  value` lines, ending with a newline.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<12} {value}");
    };
    let time = |at: time::OffsetDateTime| at.format(&Rfc3339).unwrap_or_default();
    line("run", report.run_id.clone());
    line("campaign", report.campaign_id.clone());
    let producer = if report.producer.complete {
        "producer done"
    } else if report.producer.stopped.is_some() {
        "producer stopped"
    } else {
        "producer publishing"
    };
    line("state", format!("{} ({producer})", report.state));
    if let Some(reason) = &report.producer.stopped {
        line(
            "stopped",
            format!(
                "{reason}; `herald campaign send CAMPAIGN_FILE --resume {}` continues it",
                report.run_id
            ),
        );
    }
    line("segment", report.segment.clone());
    line("started", time(report.started_at));
    let skipped: u64 = report.producer.skipped.values().sum();
    let reasons: Vec<String> = report
        .producer
        .skipped
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join(", "))
    };
    line(
        "published",
        format!(
            "{} jobs; skipped {skipped}{reasons}; malformed rows {}",
            report.producer.published, report.producer.malformed
        ),
    );
    let results = &report.results;
    line(
        "results",
        format!(
            "{} recorded; {} jobs pending",
            results.total, report.pending
        ),
    );
    for (status, n) in [
        ("sent", results.sent),
        ("failed", results.failed),
        ("dead", results.dead),
        ("expired", results.expired),
        ("cancelled", results.cancelled),
        ("skipped", results.skipped),
    ] {
        line(&format!("  {status}"), n.to_string());
    }
    line("delivered", report.delivered.to_string());
    line("read", report.read.to_string());
    let errors: Vec<String> = report
        .top_errors
        .iter()
        .map(|error| match error.subcode {
            Some(subcode) => format!("{}/{subcode} ×{}", error.code, error.count),
            None => format!("{} ×{}", error.code, error.count),
        })
        .collect();
    line(
        "top errors",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        },
    );
    line(
        "rate",
        match report.rate.per_sec {
            Some(per_sec) => format!("{per_sec:.1}/s ({})", report.rate.basis),
            None => format!("unknown ({})", report.rate.basis),
        },
    );
    line(
        "eta",
        match (report.eta.seconds, report.eta.at) {
            (Some(seconds), Some(at)) => {
                format!(
                    "{} (at {}; {})",
                    duration(seconds),
                    time(at),
                    report.eta.basis
                )
            }
            _ => format!("unknown ({})", report.eta.basis),
        },
    );
    out
}

/// `45 s`, `12 min 5 s`, `3 h 20 min`.
fn duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use herald_store::{ErrorCount, RunState};
    use time::macros::datetime;

    use super::*;
    use crate::ops::status::{Eta, ProducerReport, Rate, ResultCounts};

    #[test]
    fn the_table_shows_every_figure() {
        let at = datetime!(2026-11-21 12:00:00 UTC);
        let report = RunReport {
            run_id: "r1".into(),
            campaign_id: "welcome-back".into(),
            state: RunState::Running,
            segment: "store".into(),
            started_at: at,
            updated_at: at,
            producer: ProducerReport {
                complete: true,
                published: 10,
                skipped: BTreeMap::from([("blank_psid".to_owned(), 2)]),
                malformed: 1,
                stopped: None,
            },
            results: ResultCounts {
                total: 8,
                sent: 5,
                failed: 1,
                dead: 0,
                expired: 0,
                skipped: 2,
                cancelled: 0,
            },
            pending: 4,
            delivered: 3,
            read: 2,
            top_errors: vec![ErrorCount {
                code: 10,
                subcode: Some(2_018_278),
                count: 1,
            }],
            rate: Rate {
                per_sec: Some(2.0),
                window_secs: 60,
                results_in_window: 6,
                basis: "6 results in the last 3 s".into(),
            },
            eta: Eta {
                seconds: Some(2),
                at: Some(at),
                basis: "4 jobs pending at 2.0/s".into(),
            },
            last_result_at: Some(at),
            as_of: at,
        };
        let table = render(&report);
        for expected in [
            "state        running (producer done)",
            "published    10 jobs; skipped 2 (blank_psid 2); malformed rows 1",
            "results      8 recorded; 4 jobs pending",
            "  sent       5",
            "delivered    3",
            "read         2",
            "top errors   10/2018278 ×1",
            "rate         2.0/s (6 results in the last 3 s)",
            "eta          2 s (at 2026-11-21T12:00:00Z; 4 jobs pending at 2.0/s)",
        ] {
            assert!(
                table.contains(expected),
                "{expected:?} missing from:\n{table}"
            );
        }
        assert!(!table.contains("stopped"), "{table}");
        let mut stopped = report.clone();
        stopped.producer.complete = false;
        stopped.producer.stopped = Some("line 7: no external_id".into());
        let table = render(&stopped);
        for expected in [
            "state        running (producer stopped)",
            "stopped      line 7: no external_id; `herald campaign send CAMPAIGN_FILE --resume r1` \
             continues it",
        ] {
            assert!(
                table.contains(expected),
                "{expected:?} missing from:\n{table}"
            );
        }
        assert_eq!(duration(3725), "1 h 2 min");
        assert_eq!(duration(65), "1 min 5 s");
    }
}
