//! Stored campaigns: a campaign document saved under its id (`herald campaigns put`, `PUT
//! /campaigns/{id}`), validated as `campaign send` validates it, every version kept so a run or
//! a trigger names the version it used; list, get (a version, or the latest) and delete (the
//! versions stay, the campaign is no longer listed or triggered). A campaign with a
//! `[trigger]` starts waiting for its event when put, and stops when deleted.

use herald_core::campaign::Campaign;
use herald_core::clock::now_ms;
use herald_store::{Store, StoredCampaign, TriggerEntry};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ops::runs::{self, DocumentFormat};
use crate::ops::{ErrorKind, OpsError};

/// Names under `/campaigns/` that are routes, not campaigns.
const RESERVED_IDS: [&str; 3] = ["runs", "schedules", "dispatches"];

/// A saved campaign version, as the CLI and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignVersion {
    pub campaign_id: String,
    pub version: i64,
    /// When this version was saved, RFC 3339.
    pub saved_at: String,
    /// `toml` or `json`.
    pub format: String,
    pub deleted: bool,
    /// The document as saved.
    pub document: String,
}

/// Validates `document` and saves it under `campaign_id` (which must be the document's `id`):
/// a new version when it changed, the latest one when it did not.
pub async fn put(
    store: &Store,
    campaign_id: &str,
    document: &str,
    format: DocumentFormat,
) -> Result<CampaignVersion, OpsError> {
    let campaign = runs::parse(document, format)?;
    if campaign.id() != campaign_id {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "id",
            format!(
                "the document's id is {:?}, but it is saved as {campaign_id:?}",
                campaign.id()
            ),
        ));
    }
    if RESERVED_IDS.contains(&campaign_id) {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "id",
            format!("{campaign_id:?} names API routes (/campaigns/{campaign_id}); pick another id"),
        ));
    }
    let trigger = campaign.trigger().map(|trigger| TriggerEntry {
        campaign_id: campaign_id.to_owned(),
        version: 0,
        page_id: campaign.page_id().to_owned(),
        kind: trigger.kind.as_str().to_owned(),
        key: trigger.key.clone(),
        delay_ms: herald_core::clock::millis(trigger.delay),
    });
    let version = store
        .put_campaign(
            campaign_id,
            document,
            format_name(format),
            now_ms(),
            trigger,
        )
        .await?;
    get(store, campaign_id, Some(version)).await
}

/// A version of a campaign, or its latest.
pub async fn get(
    store: &Store,
    campaign_id: &str,
    version: Option<i64>,
) -> Result<CampaignVersion, OpsError> {
    let stored = store
        .stored_campaign(campaign_id, version)
        .await?
        .ok_or_else(|| unknown(campaign_id, version))?;
    Ok(shown(stored))
}

/// The latest version of every campaign not deleted.
pub async fn list(store: &Store) -> Result<Vec<CampaignVersion>, OpsError> {
    Ok(store
        .stored_campaigns()
        .await?
        .into_iter()
        .map(shown)
        .collect())
}

/// Deletes a campaign (its versions stay for the runs that name them).
pub async fn delete(store: &Store, campaign_id: &str) -> Result<CampaignVersion, OpsError> {
    if !store.delete_campaign(campaign_id).await? {
        return Err(unknown(campaign_id, None));
    }
    get(store, campaign_id, None).await
}

/// The latest version of a campaign that may be triggered, parsed: its version and campaign.
pub(crate) async fn live(store: &Store, campaign_id: &str) -> Result<(i64, Campaign), OpsError> {
    parsed(store, campaign_id, false).await
}

/// The latest version of a campaign, deleted or not, parsed.
pub(crate) async fn latest(store: &Store, campaign_id: &str) -> Result<(i64, Campaign), OpsError> {
    parsed(store, campaign_id, true).await
}

async fn parsed(
    store: &Store,
    campaign_id: &str,
    deleted_too: bool,
) -> Result<(i64, Campaign), OpsError> {
    let stored = store
        .stored_campaign(campaign_id, None)
        .await?
        .filter(|stored| deleted_too || !stored.deleted)
        .ok_or_else(|| unknown(campaign_id, None))?;
    let format = if stored.format == "json" {
        DocumentFormat::Json
    } else {
        DocumentFormat::Toml
    };
    Ok((stored.version, runs::parse(&stored.document, format)?))
}

fn shown(stored: StoredCampaign) -> CampaignVersion {
    let saved_at =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(stored.created_at_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .format(&Rfc3339)
            .unwrap_or_default();
    CampaignVersion {
        campaign_id: stored.campaign_id,
        version: stored.version,
        saved_at,
        format: stored.format,
        deleted: stored.deleted,
        document: stored.document,
    }
}

fn format_name(format: DocumentFormat) -> &'static str {
    match format {
        DocumentFormat::Toml => "toml",
        DocumentFormat::Json => "json",
    }
}

fn unknown(campaign_id: &str, version: Option<i64>) -> OpsError {
    OpsError::UnknownCampaign {
        campaign_id: campaign_id.to_owned(),
        version,
    }
}
