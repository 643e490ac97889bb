//! What one webhook request may take: a deadline for the whole request (`REQUEST_DEADLINE`,
//! body upload included), and a budget of body bytes held in memory at once. The body must be
//! buffered whole to check its signature, so without a budget a hundred clients each sending
//! the largest allowed body could take gigabytes. Small bodies (Meta's usual, up to
//! `SMALL_BODY_BYTES`) and large ones draw on separate budgets, so large uploads never starve
//! ordinary deliveries. A request that cannot get its bytes within `BUDGET_WAIT` gets 503, and
//! Meta retries it later.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest one webhook request may take, from its headers to the answer.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(20);
/// Bodies up to this size draw on the small budget.
pub(crate) const SMALL_BODY_BYTES: usize = 64 * 1024;
/// Bytes of small bodies held at once.
const SMALL_BUDGET_BYTES: usize = 16 * 1024 * 1024;
/// Bytes of large bodies held at once.
const LARGE_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// How long a request waits for its bytes before it is turned away (503).
const BUDGET_WAIT: Duration = Duration::from_secs(5);
/// Budgets count kibibytes, so that one permit is never a byte.
const UNIT: usize = 1024;

/// The two body budgets of a webhook.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
}

impl BodyBudget {
    pub(crate) fn new() -> Self {
        Self {
            small: Arc::new(Semaphore::new(SMALL_BUDGET_BYTES / UNIT)),
            large: Arc::new(Semaphore::new(LARGE_BUDGET_BYTES / UNIT)),
        }
    }

    /// Reserves room for a body of `bytes` (the declared length, or the limit when the client
    /// declared none), waiting up to `BUDGET_WAIT`; `None` when there is no room.
    pub(crate) async fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let budget = if bytes <= SMALL_BODY_BYTES {
            &self.small
        } else {
            &self.large
        };
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).ok()?;
        let wait = budget.clone().acquire_many_owned(units);
        tokio::time::timeout(BUDGET_WAIT, wait).await.ok()?.ok()
    }
}
