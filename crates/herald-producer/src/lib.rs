//! The producer: expands a segment into one rendered `SendJob` per user and publishes them with
//! confirms. Reading segments (`segment`, `source`), deciding per user (`plan`), publishing with
//! pipelined confirms (`run`), the resumable run record (`checkpoint`), and the launch check
//! against the page's daily call budget (`budget` the arithmetic, `launch` the check).

pub mod budget;
mod cap;
mod checkpoint;
pub mod dry;
#[cfg(test)]
mod fuzz;
pub mod launch;
mod link;
pub mod plan;
pub mod run;
pub mod segment;
mod shared;
mod source;
mod spec;

pub use budget::{Budget, EngagedFrom};
pub use dry::{DryRun, dry_run, dry_run_store, dry_run_users};
pub use launch::{LaunchCheck, LaunchReport};
pub use run::{CHECKPOINT_EVERY_ROWS, Run};
pub use segment::{
    MAX_LINE_BYTES, ReadError, Row, RowError, SegmentError, SegmentFormat, SegmentReader,
};
pub use shared::{Connected, SharedLink};
pub use source::Progress;
pub use spec::{ProducerError, SegmentInput, SendSpec};
