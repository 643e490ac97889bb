//! `herald serve`: the Messenger webhook (`webhook`), the consumers that turn webhook events and
//! delivery results into store records (`ingest`, `results`), and the admin API (`api`) over the
//! operations the CLI shares (`ops`).

pub mod api;
pub mod ingest;
pub mod ops;
pub mod results;
pub mod webhook;
