//! Minting signed refs (`herald refs sign`, `POST /refs`): the `ref` to put in an
//! `https://m.me/<page>?ref=...` link or a plugin's `data-ref`, so that whoever opens it is
//! linked to one user. The format and the keys are `herald_core::signed_ref`'s.

use herald_core::duration::parse_duration;
use herald_core::signed_ref::RefKeys;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ops::{ErrorKind, OpsError};

/// How long a ref stays valid when the request does not say.
pub const DEFAULT_TTL: &str = "30d";
/// The longest validity a ref may be given.
const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

/// What to sign.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The user the link is for.
    pub external_id: String,
    /// The page whose m.me link carries the ref (a ref is valid on that page only).
    pub page_id: String,
    /// How long the ref stays valid (`30d`, `12h`, ...; at most 366 days). Default 30 days.
    #[serde(default)]
    pub ttl: Option<String>,
}

/// A signed ref and where to use it.
#[derive(Debug, Clone, Serialize)]
pub struct SignedRef {
    /// The ref itself.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The page it is valid on.
    pub page_id: String,
    /// When it stops linking.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The m.me link carrying it.
    pub link: String,
    /// The key id it was signed with (for rotation).
    pub key_id: String,
}

/// Signs `request` with the first of `keys`, valid from `now` for its TTL.
pub fn sign(
    keys: Option<&RefKeys>,
    request: &SignRequest,
    now: OffsetDateTime,
) -> Result<SignedRef, OpsError> {
    let Some(keys) = keys else {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "HERALD_REF_SECRET",
            "not set: refs cannot be signed (see README, Security)",
        ));
    };
    let page_ok = (1..=32).contains(&request.page_id.len())
        && request.page_id.bytes().all(|b| b.is_ascii_digit());
    if !page_ok {
        return Err(OpsError::invalid(
            ErrorKind::Usage,
            "page_id",
            "must be a page id (1 to 32 digits)",
        ));
    }
    let ttl = request.ttl.as_deref().unwrap_or(DEFAULT_TTL);
    let ttl = match parse_duration(ttl) {
        Ok(ttl) if !ttl.is_zero() && ttl <= MAX_TTL => ttl,
        Ok(_) => {
            return Err(OpsError::invalid(
                ErrorKind::Usage,
                "ttl",
                "must be more than 0 and at most 366 days",
            ));
        }
        Err(error) => {
            return Err(OpsError::invalid(
                ErrorKind::Usage,
                "ttl",
                error.to_string(),
            ));
        }
    };
    let expires_at = now + ttl;
    let reference = keys
        .sign(&request.page_id, &request.external_id, expires_at)
        .map_err(|error| OpsError::invalid(ErrorKind::Data, "external_id", error.to_string()))?;
    Ok(SignedRef {
        link: format!("https://m.me/{}?ref={reference}", request.page_id),
        reference,
        page_id: request.page_id.clone(),
        expires_at: expires_at.replace_nanosecond(0).unwrap_or(expires_at),
        key_id: keys.signing_key_id().to_owned(),
    })
}
