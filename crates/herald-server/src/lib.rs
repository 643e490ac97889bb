//! `herald serve`: the Messenger webhook (`webhook`), the consumers that turn webhook events and
//! delivery results into store records (`ingest`, `results`), and the admin API (`api`) over the
//! operations the CLI shares (`ops`), and the dispatcher of triggered campaigns (`fires`).
//! `serve` puts them together on one address with `/metrics`, `/healthz` and `/readyz`.

pub mod api;
mod consume;
pub mod fires;
pub mod freshness;
#[cfg(test)]
mod fuzz;
mod handler;
mod http;
pub mod ingest;
mod lane;
pub mod ops;
pub mod results;
pub mod serve;
pub mod webhook;

pub use consume::ConsumeError;
