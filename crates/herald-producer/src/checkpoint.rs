//! The run record that makes `herald campaign send --resume RUN_ID` continue with no gap: the
//! run id, the campaign, the segment, and the line of the last row such that every row up to it
//! is confirmed by the broker. It is a JSON file replaced atomically (write, fsync, rename), so
//! a crash leaves the previous record or the new one, never half of one. The profile store takes
//! this over when it exists (issue 5); the contract (what is recorded, when) stays.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// The campaign's id; a resume with another campaign is refused.
    pub campaign_id: String,
    /// The segment file, as given.
    pub segment: PathBuf,
    /// When the run started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Every row on or before this line has its job or result confirmed by the broker.
    pub confirmed_through_line: u64,
    /// Jobs confirmed so far.
    pub published: u64,
    /// Skipped results confirmed so far, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Rows that could not be read, so far.
    pub malformed: u64,
    /// True once every row is confirmed.
    pub complete: bool,
}

/// Problems reading or writing run records.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// No record for that run id.
    #[error("no run {run_id} in {dir} (was it started from another directory or machine?)")]
    UnknownRun {
        /// The run asked for.
        run_id: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// The record exists but is not readable JSON.
    #[error("run record {path} is unreadable: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// File system failure.
    #[error("run record {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The directory holding one JSON record per run.
#[derive(Debug, Clone)]
pub struct RunStore {
    dir: PathBuf,
}

impl RunStore {
    /// Records live in `dir/runs/`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into().join("runs"),
        }
    }

    fn path(&self, run_id: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.json"))
    }

    /// Loads a run's record.
    pub fn load(&self, run_id: &str) -> Result<RunRecord, CheckpointError> {
        let path = self.path(run_id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(CheckpointError::UnknownRun {
                    run_id: run_id.to_owned(),
                    dir: self.dir.clone(),
                });
            }
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|error| CheckpointError::Corrupt {
            path,
            reason: error.to_string(),
        })
    }

    /// Replaces a run's record atomically.
    pub fn save(&self, record: &RunRecord) -> Result<(), CheckpointError> {
        let path = self.path(&record.run_id);
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let temp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temp).map_err(io)?;
        let bytes = serde_json::to_vec_pretty(record).expect("a run record serialises");
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temp, &path).map_err(io)?;
        Ok(())
    }

    /// The directory the records are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn records_round_trip_and_unknown_runs_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RunStore::new(dir.path());
        let record = RunRecord {
            run_id: "r1".into(),
            campaign_id: "c".into(),
            segment: "users.csv".into(),
            started_at: datetime!(2026-11-21 12:00 UTC),
            confirmed_through_line: 41,
            published: 30,
            skipped: BTreeMap::from([("blank_psid".to_owned(), 2)]),
            malformed: 1,
            complete: false,
        };
        store.save(&record).expect("save");
        store
            .save(&RunRecord {
                confirmed_through_line: 42,
                ..record.clone()
            })
            .expect("save again");
        assert_eq!(store.load("r1").expect("load").confirmed_through_line, 42);
        match store.load("r2") {
            Err(CheckpointError::UnknownRun { run_id, .. }) => assert_eq!(run_id, "r2"),
            other => panic!("expected UnknownRun, got {other:?}"),
        }
        std::fs::write(store.dir().join("r3.json"), b"{not json").expect("write");
        assert!(matches!(
            store.load("r3"),
            Err(CheckpointError::Corrupt { .. })
        ));
    }
}
