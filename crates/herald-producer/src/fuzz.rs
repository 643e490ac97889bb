//! Property tests: arbitrary and mutated segment files (CSV and JSONL) read to the end. Every
//! row is a row or a malformed row with its line, the header a clear error; nothing panics or
//! loops. CI runs proptest's default number of cases; `scripts/fuzz` runs many more.

use herald_core::fuzzing::mutated;
use proptest::prelude::*;

use crate::segment::{SegmentFormat, SegmentReader};

const CSV: &[u8] = b"external_id,messenger_id,first_name,last_inbound_at,opted_out\n\
u1,101,Ana,2026-12-01T09:00:00Z,false\nu2,,\"B\"\"o\",,\nu3,103,\xc3\xa9,,true\n";
const JSONL: &[u8] = b"{\"external_id\":\"u1\",\"psid\":\"101\",\"first_name\":\"Ana\"}\n\
{\"external_id\":\"u2\",\"messenger_id\":null,\"n\":3}\n{broken\n";

/// Reads every row of `bytes`; panics only if the reader does.
fn read_all(bytes: Vec<u8>, format: SegmentFormat) -> Result<(), TestCaseError> {
    let reader = match SegmentReader::new(Box::new(std::io::Cursor::new(bytes)), format) {
        Ok(reader) => reader,
        Err(error) => {
            prop_assert!(!error.to_string().trim().is_empty());
            return Ok(());
        }
    };
    // A reader ends after a stopping error: `take` only guards against a reader that loops.
    for row in reader.take(10_000) {
        if let Err(error) = row {
            prop_assert!(!error.to_string().trim().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn csv_segments_read_to_the_end(
        bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..400), mutated(CSV.to_vec())]
    ) {
        read_all(bytes, SegmentFormat::Csv)?;
    }

    #[test]
    fn jsonl_segments_read_to_the_end(
        bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..400), mutated(JSONL.to_vec())]
    ) {
        read_all(bytes, SegmentFormat::Jsonl)?;
    }
}
