//! A frequency-capped run's hold on its page: capped campaigns on one page plan one at a time,
//! so each counts every message the one before planned. The run claims the page in the store
//! (waiting while another capped run holds it; a claim lapses a minute after its holder stops
//! renewing it), reads what each user of the page received or has on the way in the cap's
//! period, records a reservation for each job it plans (written with the run record's saves
//! and before the claim is given back), and releases the claim when it has published
//! everything. A run that stops early keeps its reservations; its claim lapses.

use std::time::Duration;

use herald_core::campaign::Campaign;
use herald_core::duration::format_duration;
use herald_store::Store;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::plan::CapCounts;
use crate::spec::ProducerError;

/// How long a claim lasts without renewal.
const LEASE: Duration = Duration::from_secs(60);
/// How often the holder renews it.
const RENEW_EVERY: Duration = Duration::from_secs(20);
/// How often a waiting run asks again.
const WAIT_STEP: Duration = Duration::from_secs(1);

/// A capped run's claim on its page and its reservations not yet written.
pub(crate) struct CapHold {
    store: Store,
    page_id: String,
    run_id: String,
    renew: JoinHandle<()>,
    pending: Vec<String>,
}

impl CapHold {
    /// For a capped campaign: waits for the page's claim, then reads the counts its planner
    /// checks. `None` for a campaign without a cap.
    pub(crate) async fn take(
        store: &Store,
        campaign: &Campaign,
        run_id: &str,
    ) -> Result<Option<(Self, CapCounts)>, ProducerError> {
        let Some(cap) = campaign.delivery().frequency_cap else {
            return Ok(None);
        };
        let page_id = campaign.page_id().to_owned();
        let mut told = false;
        while !store.claim_cap(&page_id, run_id, LEASE).await? {
            if !told {
                info!(page_id = %page_id, run_id,
                    "Another frequency-capped campaign is planning on this page; this run starts \
                     when it has published, so the cap counts its messages too.");
                told = true;
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
        let renew = tokio::spawn(renew(store.clone(), page_id.clone(), run_id.to_owned()));
        let period_ms = herald_core::clock::millis(cap.per);
        let since = herald_core::clock::now_ms().saturating_sub(period_ms);
        let hold = Self {
            store: store.clone(),
            page_id: page_id.clone(),
            run_id: run_id.to_owned(),
            renew,
            pending: Vec::new(),
        };
        let counts = store.cap_counts(&page_id, since, run_id).await?;
        let counts = CapCounts {
            max: cap.max,
            per: format_duration(cap.per),
            counts,
        };
        Ok(Some((hold, counts)))
    }

    /// Notes a job planned for `external_id`.
    pub(crate) fn reserve(&mut self, external_id: String) {
        self.pending.push(external_id);
    }

    /// Writes the reservations noted so far.
    pub(crate) async fn flush(&mut self) -> Result<(), ProducerError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let at = herald_core::clock::now_ms();
        self.store
            .reserve_caps(&self.run_id, &self.page_id, &self.pending, at)
            .await?;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is left and gives the page's claim back.
    pub(crate) async fn release(mut self) -> Result<(), ProducerError> {
        self.flush().await?;
        self.renew.abort();
        self.store.release_cap(&self.page_id, &self.run_id).await?;
        Ok(())
    }
}

impl Drop for CapHold {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

async fn renew(store: Store, page_id: String, run_id: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match store.claim_cap(&page_id, &run_id, LEASE).await {
            Ok(true) => {}
            Ok(false) => warn!(page_id = %page_id, run_id = %run_id,
                "This run's frequency-cap claim lapsed and another run took it; their counts may \
                 overlap."),
            Err(error) => warn!(page_id = %page_id, error = %error,
                "Could not renew the frequency-cap claim; trying again."),
        }
    }
}
