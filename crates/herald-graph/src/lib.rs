//! Send API client: POSTs pre-rendered message bodies to the Graph API with the page token and
//! `appsecret_proof`, turns every failure into a `SendError` that carries its `Verdict` (one
//! classification table, docs/messenger-platform.md §3.2), and reads the usage headers. It does not
//! rate-limit, retry or log at warn level: the worker decides what to do with a verdict.

mod classify;
mod client;
mod error;
#[cfg(test)]
mod fuzz;
mod proof;
mod response;
mod usage;

pub use client::{BuildError, GraphClient, GraphSettings, MAX_RESPONSE_BYTES};
pub use error::{GraphError, SendError};
pub use proof::appsecret_proof;
pub use response::Sent;
pub use usage::Usage;
