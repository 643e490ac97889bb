//! `herald users import FILE [--page PAGE_ID]`: thin wiring over `herald_server::ops::users`
//! (which `POST /users/import` calls too). The format comes from the extension (`.jsonl` or
//! `.ndjson` is JSONL, anything else CSV). Prints the counts, then each malformed row's line
//! and reason (the first 100); exit 0 even with malformed rows, which are reported, not fatal.

use std::path::Path;
use std::process::ExitCode;

use herald_producer::SegmentFormat;
use herald_server::ops::users::{self, ImportOptions};

use crate::commands::common::open_store;
use crate::commands::ops::failed;
use crate::commands::text::out;
use crate::config::Config;

pub(crate) async fn import(file: &Path, page: Option<String>, config: &Config) -> ExitCode {
    let input = match std::fs::File::open(file) {
        Ok(input) => input,
        Err(error) => {
            eprintln!(
                "herald users import: cannot read {}: {error}",
                file.display()
            );
            return ExitCode::from(66);
        }
    };
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let format = SegmentFormat::from_path(file);
    let options = ImportOptions { page_id: page };
    let report = users::import(&store, Box::new(input), format, options).await;
    store.close().await;
    match report {
        Ok(report) => {
            out(&format!("rows: {}", report.rows));
            out(&format!("imported: {}", report.imported));
            out(&format!("malformed: {}", report.malformed));
            for problem in &report.malformed_rows {
                let line = problem.line.unwrap_or_default();
                out(&format!("  {}:{line}: {}", file.display(), problem.message));
            }
            let unlisted = report.malformed - report.malformed_rows.len() as u64;
            if unlisted > 0 {
                out(&format!("  ... and {unlisted} more malformed row(s)"));
            }
            ExitCode::SUCCESS
        }
        Err(error) => failed("herald users import", &error),
    }
}
