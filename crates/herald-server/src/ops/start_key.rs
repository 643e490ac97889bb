//! Idempotent run starts: `POST /campaigns/runs` with an `Idempotency-Key` header and
//! `herald campaign send --idempotency-key KEY`. The same key for the same campaign within
//! `KEY_LIFETIME` returns the run the first start created (and publishes nothing); the same key
//! with a different document is a conflict. A key is claimed before the run is created, so of
//! two concurrent starts with one key only one creates a run; the other waits for it (up to
//! `PENDING_WAIT`) and returns it.

use std::time::Duration;

use herald_store::{RunStart, Store};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tracing::warn;

use crate::ops::{ErrorKind, OpsError};

/// How long a key is remembered.
pub const KEY_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a start waits for another start holding the same key to create its run.
const PENDING_WAIT: Duration = Duration::from_secs(10);
/// A claim that got no run within this long was abandoned (its process died): it is forgotten.
const ABANDONED_AFTER: Duration = Duration::from_secs(120);
/// The longest key accepted, in bytes.
const MAX_KEY_BYTES: usize = 255;

/// A start's idempotency key, with what identifies the start's document.
#[derive(Debug, Clone)]
pub struct StartKey {
    campaign_id: String,
    key: String,
    fingerprint: String,
}

impl StartKey {
    /// The key `key` for a start of `campaign_id` whose inputs (document, segment, options)
    /// are `parts`. A key is 1 to 255 visible ASCII characters.
    pub fn new(campaign_id: &str, key: &str, parts: &[&[u8]]) -> Result<Self, OpsError> {
        let valid = !key.is_empty()
            && key.len() <= MAX_KEY_BYTES
            && key.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(OpsError::invalid(
                ErrorKind::Usage,
                "idempotency_key",
                format!("an idempotency key is 1 to {MAX_KEY_BYTES} visible ASCII characters"),
            ));
        }
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Ok(Self {
            campaign_id: campaign_id.to_owned(),
            key: key.to_owned(),
            fingerprint: hex::encode(hash.finalize()),
        })
    }

    /// Claims the key: `None` when this start is the first (it creates the run, then calls
    /// `bind` or `release`), `Some(run_id)` when the key already started that run.
    pub async fn claim(&self, store: &Store) -> Result<Option<String>, OpsError> {
        let waited = tokio::time::Instant::now();
        loop {
            let now = OffsetDateTime::now_utc();
            let forget = (now - KEY_LIFETIME, now - ABANDONED_AFTER);
            let found = store
                .claim_run_start(&self.campaign_id, &self.key, &self.fingerprint, now, forget)
                .await?;
            match found {
                RunStart::Claimed => return Ok(None),
                RunStart::Existing { run_id } => return Ok(Some(run_id)),
                RunStart::Different => {
                    return Err(OpsError::Conflict(format!(
                        "idempotency key {:?} already started a run of campaign {} with a \
                         different document; use a new key for a new run",
                        self.key, self.campaign_id
                    )));
                }
                RunStart::Pending if waited.elapsed() < PENDING_WAIT => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                RunStart::Pending => {
                    return Err(OpsError::Conflict(format!(
                        "another start with idempotency key {:?} is still creating its run; \
                         retry in a moment",
                        self.key
                    )));
                }
            }
        }
    }

    /// Records the run this key started.
    pub async fn bind(&self, store: &Store, run_id: &str) -> Result<(), OpsError> {
        store
            .bind_run_start(&self.campaign_id, &self.key, run_id)
            .await?;
        Ok(())
    }

    /// Gives the key up after the run could not be created, so a retry may use it.
    pub async fn release(&self, store: &Store) {
        if let Err(error) = store.release_run_start(&self.campaign_id, &self.key).await {
            warn!(error = %error, "Could not release an idempotency key; retries with it are \
                answered 409 for up to two minutes, then may start the run.");
        }
    }
}
