//! The producer: expands a segment into one rendered `SendJob` per user and publishes them with
//! confirms. So far it owns reading segment files (`segment`); the publishing pipeline follows
//! (issue 3).

pub mod segment;

pub use segment::{Row, RowError, SegmentError, SegmentFormat, SegmentReader};
