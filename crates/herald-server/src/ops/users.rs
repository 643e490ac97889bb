//! `import`: users from a CSV or JSONL stream into the store, upserted in batches. Rows are read
//! by herald-producer's `SegmentReader` (the same columns, aliases and line numbers as a
//! segment file) on a blocking thread, and written by `Store::upsert_users` on the async side,
//! so reading the next batch overlaps writing the last one and memory stays at two batches
//! whatever the input's size. A malformed row is counted and reported by its line number, never
//! by its text (rows hold personal data), and the rest is imported.
//!
//! Each batch is its own transaction: if the store fails half way, the batches before stay
//! written, and importing the same input again is harmless (an upsert).

use std::io::Read;

use herald_producer::{ReadError, RowError, SegmentFormat, SegmentReader};
use herald_store::{Store, UserRecord};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::warn;

use crate::ops::{ErrorKind, OpsError, Problem};

/// Records per `upsert_users` call (one transaction).
pub const IMPORT_BATCH: usize = 10_000;
/// Malformed rows listed one by one in the report; past this only the count grows.
pub const MALFORMED_LISTED: usize = 100;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Rows read, valid or not (blank lines are not rows).
    pub rows: u64,
    /// Valid rows written to the store.
    pub imported: u64,
    /// Rows that could not be read.
    pub malformed: u64,
    /// The first `MALFORMED_LISTED` malformed rows: `line` and `message`.
    pub malformed_rows: Vec<Problem>,
}

/// Where an import's rows go besides the user: a page, when the PSIDs are known to be that
/// page's (the import then also links the Messenger identity `(page, PSID)` to the user).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The page the `messenger_id`s belong to.
    pub page_id: Option<String>,
}

/// One batch from the reading thread.
enum Batch {
    Rows {
        records: Vec<UserRecord>,
        malformed: Vec<RowError>,
    },
    /// The input cannot be read (a CSV header without `external_id`, a row over the length
    /// cap); nothing after this arrives.
    Unreadable(String),
}

/// Imports every row of `input` (CSV with a header row, or JSONL) into `store`.
pub async fn import(
    store: &Store,
    input: Box<dyn Read + Send>,
    format: SegmentFormat,
    options: ImportOptions,
) -> Result<ImportReport, OpsError> {
    if let Some(page) = &options.page_id
        && (page.is_empty() || !page.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "page_id",
            "a Facebook Page id is digits only",
        ));
    }
    let (sender, mut batches) = mpsc::channel(2);
    let page = options.page_id.clone();
    let reader = tokio::task::spawn_blocking(move || read_batches(input, format, page, &sender));
    let mut report = ImportReport::default();
    while let Some(batch) = batches.recv().await {
        let (records, malformed) = match batch {
            Batch::Rows { records, malformed } => (records, malformed),
            Batch::Unreadable(reason) => {
                return Err(OpsError::invalid(ErrorKind::Data, "", reason));
            }
        };
        report.rows += (records.len() + malformed.len()) as u64;
        report.malformed += malformed.len() as u64;
        for error in malformed {
            if report.malformed_rows.len() < MALFORMED_LISTED {
                report.malformed_rows.push(Problem {
                    path: String::new(),
                    line: Some(error.line),
                    column: None,
                    message: error.reason,
                });
            }
        }
        if records.is_empty() {
            continue;
        }
        if let Err(error) = store.upsert_users(&records).await {
            warn!(imported = report.imported, error = %error,
                "Import stopped by a store error; the batches before it are written.");
            return Err(error.into());
        }
        report.imported += records.len() as u64;
    }
    reader.await.map_err(|error| {
        OpsError::Internal(format!("the import's reading thread failed: {error}"))
    })?;
    Ok(report)
}

/// Reads rows into batches until the input ends or the receiver is gone.
fn read_batches(
    input: Box<dyn Read + Send>,
    format: SegmentFormat,
    page: Option<String>,
    sender: &mpsc::Sender<Batch>,
) {
    let reader = match SegmentReader::new(input, format) {
        Ok(reader) => reader,
        Err(error) => {
            let _ = sender.blocking_send(Batch::Unreadable(error.to_string()));
            return;
        }
    };
    let (mut records, mut malformed) = (Vec::with_capacity(IMPORT_BATCH), Vec::new());
    for row in reader {
        match row {
            Ok(row) => records.push(UserRecord::from_user(&row.user, page.as_deref())),
            Err(ReadError::Row(error)) => malformed.push(error),
            Err(ReadError::Stopped(error)) => {
                if (records.is_empty() && malformed.is_empty())
                    || sender
                        .blocking_send(Batch::Rows { records, malformed })
                        .is_ok()
                {
                    let _ = sender.blocking_send(Batch::Unreadable(format!(
                        "{error}; the rows before it were imported"
                    )));
                }
                return;
            }
        }
        if records.len() + malformed.len() >= IMPORT_BATCH {
            let batch = Batch::Rows {
                records: std::mem::replace(&mut records, Vec::with_capacity(IMPORT_BATCH)),
                malformed: std::mem::take(&mut malformed),
            };
            if sender.blocking_send(batch).is_err() {
                return;
            }
        }
    }
    if !records.is_empty() || !malformed.is_empty() {
        let _ = sender.blocking_send(Batch::Rows { records, malformed });
    }
}
