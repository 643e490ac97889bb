//! Herald's vocabulary: the wire contracts (`SendJob`, `DeliveryResult`), the error classes
//! every failure maps to, and secrets that refuse to print. This crate does no I/O: its serde
//! types are the wire contract, so a field change here is a versioned change.

pub mod campaign;
pub mod class;
pub mod clock;
pub mod control;
pub mod cron;
mod decode;
pub mod duration;
pub mod filter;
#[cfg(test)]
mod fuzz;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod job;
pub mod limits;
pub mod local;
mod path;
pub mod rates;
pub mod redact;
mod render;
pub mod result;
pub mod secret;
pub mod signed_ref;
pub mod skip;
pub mod user;
pub mod window;

pub use campaign::{Campaign, CampaignErrors, Problem, ProblemKind};
pub use class::{ErrorClass, Verdict};
pub use control::{CONTROL_VERSION, ControlAction, ControlError, ControlMessage, ControlTarget};
pub use decode::{Versioned, decode};
pub use id::{IdError, MAX_ID_BYTES, is_time_id, validate_id};
pub use job::{JOB_VERSION, SendJob};
pub use result::{DeliveryResult, ErrorInfo, RESULT_VERSION, ResultStatus};
pub use secret::Secret;
pub use skip::SkipReason;
pub use user::User;
pub use window::{admit, window_check, window_closes};
