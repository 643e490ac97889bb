//! `--dry-run`: the audience, the skips by reason and a few rendered requests, computed by the
//! same planner a real run uses, with no broker and nothing published.

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::StreamExt;
use herald_core::campaign::Campaign;
use herald_store::Store;
use time::OffsetDateTime;

use crate::plan::{Planned, Planner};
use crate::segment::{ReadError, SegmentReader};
use crate::spec::ProducerError;

/// How many rendered requests a dry run shows.
const SAMPLES: usize = 3;

/// What a run of this campaign over this segment would do now.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DryRun {
    /// Rows read (valid or not).
    pub rows: u64,
    /// Users the filters leave out.
    pub filtered: u64,
    /// Jobs that would be published: the audience.
    pub jobs: u64,
    /// Users that would get a `skipped` result, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Malformed rows, with the first few errors (`line N: reason`).
    pub malformed: u64,
    /// The first malformed rows' errors.
    pub malformed_examples: Vec<String>,
    /// The first rendered Send API bodies.
    pub samples: Vec<String>,
    /// Jobs due later (local time, quiet hours), and the earliest and latest such time.
    pub due_later: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_due: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_due: Option<OffsetDateTime>,
}

/// Plans every row of `segment` for `campaign` without publishing anything.
pub fn dry_run(campaign: &Campaign, segment: &Path, strict: bool) -> Result<DryRun, ProducerError> {
    let now = OffsetDateTime::now_utc();
    let mut planner = Planner::new(campaign, "dry-run");
    let mut report = DryRun::default();
    for row in SegmentReader::open(segment)? {
        report.rows += 1;
        let row = match row {
            Ok(row) => row,
            Err(ReadError::Stopped(error)) => return Err(ProducerError::Segment(error)),
            Err(ReadError::Row(error)) if strict => return Err(ProducerError::Malformed(error)),
            Err(ReadError::Row(error)) => {
                report.malformed += 1;
                if report.malformed_examples.len() < SAMPLES {
                    report.malformed_examples.push(error.to_string());
                }
                continue;
            }
        };
        report.add(planner.plan(&row.user, now));
    }
    Ok(report)
}

/// Plans every user of the store's audience on the campaign's page without publishing
/// anything (`segment.source = "store"`).
pub async fn dry_run_store(campaign: &Campaign, store: &Store) -> Result<DryRun, ProducerError> {
    let now = OffsetDateTime::now_utc();
    let mut planner = Planner::new(campaign, "dry-run");
    let mut report = DryRun::default();
    let mut users = store.users_for_page(campaign.page_id());
    while let Some(user) = users.next().await {
        report.rows += 1;
        report.add(planner.plan(&user?, now));
    }
    Ok(report)
}

/// Plans users given in memory (an API-triggered send) without publishing anything.
pub fn dry_run_users(campaign: &Campaign, users: &[herald_core::User]) -> DryRun {
    let now = OffsetDateTime::now_utc();
    let mut planner = Planner::new(campaign, "dry-run");
    let mut report = DryRun::default();
    for user in users {
        report.rows += 1;
        report.add(planner.plan(user, now));
    }
    report
}

impl DryRun {
    fn add(&mut self, planned: Option<Planned>) {
        match planned {
            None => self.filtered += 1,
            Some(Planned::Job(job)) => {
                self.jobs += 1;
                if self.samples.len() < SAMPLES {
                    self.samples.push(job.request.get().to_owned());
                }
                if let Some(due) = job.not_before {
                    self.due_later += 1;
                    self.first_due = Some(self.first_due.map_or(due, |first| first.min(due)));
                    self.last_due = Some(self.last_due.map_or(due, |last| last.max(due)));
                }
            }
            Some(Planned::Skip { reason, .. }) => {
                *self.skipped.entry(reason.to_owned()).or_default() += 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_outcome_and_keeps_three_samples() {
        let campaign = Campaign::from_toml(
            "id = \"c\"\npage_id = \"1\"\nmessaging_type = \"UPDATE\"\n[message]\ntext = \"Hi {{ first_name }}\"\n\
             [segment]\nfile = \"x.csv\"\n[[segment.filter]]\nattribute = \"country\"\nop = \"eq\"\nvalue = \"BR\"\n",
        )
        .expect("valid");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("users.csv");
        std::fs::write(
            &path,
            "external_id,messenger_id,first_name,country\na,1,Ana,BR\nb,2,Bo,BR\nc,,Cy,BR\nd,4,Di,PT\ne,5\nf,6,Fe,BR\ng,7,Gi,BR\na,8,Ana2,BR\n",
        )
        .expect("write");
        let report = dry_run(&campaign, &path, false).expect("dry run");
        assert_eq!(
            (report.rows, report.filtered, report.jobs, report.malformed),
            (8, 1, 4, 1)
        );
        assert_eq!(
            report.skipped,
            BTreeMap::from([("blank_psid".into(), 1), ("duplicate".into(), 1)])
        );
        assert_eq!(report.samples.len(), 3);
        assert!(
            report.samples[0].contains("\"text\":\"Hi Ana\""),
            "{}",
            report.samples[0]
        );
        assert_eq!(
            report.malformed_examples,
            vec!["line 6: 2 fields where the header has 4".to_owned()]
        );
        assert!(matches!(
            dry_run(&campaign, &path, true),
            Err(ProducerError::Malformed(_))
        ));
    }
}
