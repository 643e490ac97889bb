//! Herald's vocabulary: the wire contracts (`SendJob`, `DeliveryResult`), the error classes
//! every failure maps to, and secrets that refuse to print. This crate does no I/O: its serde
//! types are the wire contract, so a field change here is a versioned change.

pub mod class;
pub mod job;
pub mod result;
pub mod secret;

pub use class::{ErrorClass, Verdict};
pub use job::{JOB_VERSION, SendJob};
pub use result::{DeliveryResult, ErrorInfo, RESULT_VERSION, ResultStatus};
pub use secret::Secret;
