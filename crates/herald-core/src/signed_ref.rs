//! Signed refs: the `ref` of an `m.me/<page>?ref=...` link (or a plugin's `data-ref`) that links
//! the person who opens it to one of the customer's users. Meta passes the ref back verbatim in
//! the webhook, so anyone can type any ref; an unsigned ref naming a user's `external_id` would
//! let a stranger receive that user's personalised messages. A signed ref carries the
//! external id, an expiry and an HMAC-SHA256 over (page, external id, expiry, key id) under a
//! secret only Herald holds, so only refs Herald minted link anything.
//!
//! Format (ASCII letters, digits and `.-_`, all allowed in an m.me `ref`, which Meta caps at 250
//! characters): `hr1.<key id>.<expiry, unix seconds>.<external id, base64url>.<MAC, base64url>`,
//! the MAC truncated to 128 bits. Keys: `HERALD_REF_SECRET` holds `KEY_ID=SECRET` entries,
//! comma-separated; the first signs, every one verifies. Rotate by putting a new key first and
//! removing the old one once every ref it signed has expired (the grace period is the longest
//! TTL handed out).
//!
//! Not done here: reading the configuration (herald-cli), linking (the ingest and the store).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::Secret;

/// The longest ref Meta passes through an m.me link.
pub const MAX_REF_LEN: usize = 250;
const PREFIX: &str = "hr1";
/// Bytes of the HMAC kept in a ref (128 bits).
const MAC_BYTES: usize = 16;
const MAX_KEY_ID_LEN: usize = 16;

/// Whether `reference` has the shape of a signed ref (its prefix), signed by whomever.
pub fn looks_signed(reference: &str) -> bool {
    reference.starts_with(PREFIX) && reference[PREFIX.len()..].starts_with('.')
}

/// The keys refs are signed and verified with. `Debug` shows key ids only.
#[derive(Clone)]
pub struct RefKeys {
    /// (key id, secret), the signing key first.
    keys: Vec<(String, Secret)>,
}

/// What a webhook ref turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefCheck {
    /// Signed by one of our keys for this page and not expired: link to this external id.
    Valid(String),
    /// Not a signed ref at all (a plain campaign tag, or an old unsigned link).
    Unsigned,
    /// Shaped like a signed ref but not signed by any of our keys for this page (forged,
    /// altered, meant for another page, or signed by a key since removed).
    BadSignature,
    /// Signed, but its expiry had passed when the person used it.
    Expired,
}

impl RefCheck {
    /// Bounded metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Valid(_) => "linked",
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
        }
    }
}

/// Why a ref cannot be signed or the keys cannot be read. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// `HERALD_REF_SECRET` is malformed.
    #[error(
        "HERALD_REF_SECRET must be KEY_ID=SECRET[,KEY_ID=SECRET...] with key ids of 1 to 16 \
         letters or digits and secrets of at least 32 characters: {0}"
    )]
    Keys(String),
    /// The signed ref would be longer than an m.me `ref` may be.
    #[error("the external id is too long for a signed ref ({len} characters; at most {max} fit)")]
    TooLong {
        /// The external id's length in bytes.
        len: usize,
        /// The longest that fits.
        max: usize,
    },
    /// The external id is empty or not printable.
    #[error("the external id must be non-empty text without control characters")]
    BadExternalId,
}

impl RefKeys {
    /// Reads `KEY_ID=SECRET[,KEY_ID=SECRET...]`; the first key signs.
    pub fn parse(value: &Secret) -> Result<Self, RefError> {
        let mut keys = Vec::new();
        for (n, entry) in value.expose().split(',').enumerate() {
            let Some((id, secret)) = entry.trim().split_once('=') else {
                return Err(RefError::Keys(format!("entry {} has no `=`", n + 1)));
            };
            let id_ok = (1..=MAX_KEY_ID_LEN).contains(&id.len())
                && id.chars().all(|c| c.is_ascii_alphanumeric());
            if !id_ok {
                return Err(RefError::Keys(format!("entry {} has a bad key id", n + 1)));
            }
            if secret.len() < 32 {
                return Err(RefError::Keys(format!(
                    "the secret of key {id} is shorter than 32 characters"
                )));
            }
            if keys.iter().any(|(known, _)| known == id) {
                return Err(RefError::Keys(format!("key id {id} appears twice")));
            }
            keys.push((id.to_owned(), Secret::new(secret)));
        }
        Ok(Self { keys })
    }

    /// The key id new refs are signed with.
    pub fn signing_key_id(&self) -> &str {
        self.keys.first().map_or("", |(id, _)| id.as_str())
    }

    /// A signed ref linking whoever opens it on `page_id` to `external_id`, valid until
    /// `expires_at`.
    pub fn sign(
        &self,
        page_id: &str,
        external_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<String, RefError> {
        if external_id.is_empty() || external_id.chars().any(char::is_control) {
            return Err(RefError::BadExternalId);
        }
        let Some((key_id, secret)) = self.keys.first() else {
            return Err(RefError::Keys("no key".to_owned()));
        };
        let expiry = expires_at.unix_timestamp().max(0);
        let mac = mac(secret, page_id, external_id, expiry, key_id);
        let signed = format!(
            "{PREFIX}.{key_id}.{expiry}.{}.{}",
            URL_SAFE_NO_PAD.encode(external_id),
            URL_SAFE_NO_PAD.encode(mac)
        );
        if signed.len() > MAX_REF_LEN {
            // base64 takes 4 characters for 3 bytes; what is left after the other parts.
            let room = MAX_REF_LEN - (signed.len() - URL_SAFE_NO_PAD.encode(external_id).len());
            return Err(RefError::TooLong {
                len: external_id.len(),
                max: room / 4 * 3,
            });
        }
        Ok(signed)
    }

    /// What `reference` (a webhook's `ref` on `page_id`) is, at the time the person used it.
    pub fn check(&self, page_id: &str, reference: &str, used_at: OffsetDateTime) -> RefCheck {
        let Some(rest) = reference
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('.'))
        else {
            return RefCheck::Unsigned;
        };
        let parts: Vec<&str> = rest.split('.').collect();
        let [key_id, expiry, external_id, signature] = parts.as_slice() else {
            return RefCheck::BadSignature;
        };
        let (Ok(expiry), Ok(external_id), Ok(signature)) = (
            expiry.parse::<i64>(),
            URL_SAFE_NO_PAD.decode(external_id),
            URL_SAFE_NO_PAD.decode(signature),
        ) else {
            return RefCheck::BadSignature;
        };
        let Ok(external_id) = String::from_utf8(external_id) else {
            return RefCheck::BadSignature;
        };
        let Some((_, secret)) = self.keys.iter().find(|(id, _)| id == key_id) else {
            return RefCheck::BadSignature;
        };
        let expected = mac(secret, page_id, &external_id, expiry, key_id);
        // Constant time: the comparison must not tell a forger how many bytes were right.
        if !bool::from(signature.as_slice().ct_eq(expected.as_slice())) {
            return RefCheck::BadSignature;
        }
        if used_at.unix_timestamp() > expiry {
            return RefCheck::Expired;
        }
        RefCheck::Valid(external_id)
    }
}

impl std::fmt::Debug for RefKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("RefKeys").field("key_ids", &ids).finish()
    }
}

fn new_mac(secret: &Secret) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).unwrap_or_else(|_| unreachable!())
}

/// The ref's MAC: HMAC-SHA256 over the fields, each length-prefixed so no two field lists
/// read alike, truncated to `MAC_BYTES`.
fn mac(secret: &Secret, page_id: &str, external_id: &str, expiry: i64, key_id: &str) -> Vec<u8> {
    let mut mac = new_mac(secret);
    for field in [PREFIX, key_id, page_id, external_id, &expiry.to_string()] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac.finalize().into_bytes()[..MAC_BYTES].to_vec()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const PAGE: &str = "1000000001";
    const NOW: OffsetDateTime = datetime!(2026-12-01 09:00 UTC);

    fn keys(value: &str) -> RefKeys {
        RefKeys::parse(&Secret::new(value)).expect("keys")
    }

    fn secret(c: char) -> String {
        std::iter::repeat_n(c, 32).collect()
    }

    #[test]
    fn a_signed_ref_links_only_on_its_page_and_before_its_expiry() {
        let keys = keys(&format!("k1={}", secret('a')));
        let signed = keys
            .sign(PAGE, "user-42", NOW + time::Duration::days(30))
            .expect("sign");
        assert!(signed.len() <= MAX_REF_LEN);
        assert!(
            signed
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=-.:_".contains(c)),
            "{signed}"
        );
        assert_eq!(
            keys.check(PAGE, &signed, NOW),
            RefCheck::Valid("user-42".into())
        );
        assert_eq!(
            keys.check("2000000002", &signed, NOW),
            RefCheck::BadSignature
        );
        assert_eq!(
            keys.check(PAGE, &signed, NOW + time::Duration::days(31)),
            RefCheck::Expired
        );
    }

    #[test]
    fn forged_altered_and_plain_refs_link_nothing() {
        let keys = keys(&format!("k1={}", secret('a')));
        let signed = keys
            .sign(PAGE, "user-42", NOW + time::Duration::days(1))
            .expect("sign");
        assert_eq!(keys.check(PAGE, "user-42", NOW), RefCheck::Unsigned);
        assert_eq!(keys.check(PAGE, "summer-sale", NOW), RefCheck::Unsigned);
        // Someone else's id in a real ref's envelope.
        let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
        parts[3] = URL_SAFE_NO_PAD.encode("victim");
        assert_eq!(
            keys.check(PAGE, &parts.join("."), NOW),
            RefCheck::BadSignature
        );
        // A later expiry.
        let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
        parts[2] = (NOW.unix_timestamp() + 10_000_000).to_string();
        assert_eq!(
            keys.check(PAGE, &parts.join("."), NOW),
            RefCheck::BadSignature
        );
        // Signed with another secret under the same key id.
        let other = RefKeys::parse(&Secret::new(format!("k1={}", secret('b')))).expect("keys");
        let forged = other
            .sign(PAGE, "user-42", NOW + time::Duration::days(1))
            .expect("sign");
        assert_eq!(keys.check(PAGE, &forged, NOW), RefCheck::BadSignature);
        for junk in [
            "hr1.",
            "hr1.k1",
            "hr1.k1.x.y.z",
            "hr1.k1.1.!!.??",
            "hr1.zz.1.dQ.AAAA",
        ] {
            assert_eq!(
                keys.check(PAGE, junk, NOW),
                RefCheck::BadSignature,
                "{junk}"
            );
        }
    }

    #[test]
    fn rotation_keeps_old_refs_valid_while_the_old_key_is_listed() {
        let old = keys(&format!("k1={}", secret('a')));
        let signed = old
            .sign(PAGE, "user-42", NOW + time::Duration::days(1))
            .expect("sign");
        let rotated = keys(&format!("k2={},k1={}", secret('b'), secret('a')));
        assert_eq!(rotated.signing_key_id(), "k2");
        assert_eq!(
            rotated.check(PAGE, &signed, NOW),
            RefCheck::Valid("user-42".into())
        );
        let retired = keys(&format!("k2={}", secret('b')));
        assert_eq!(retired.check(PAGE, &signed, NOW), RefCheck::BadSignature);
    }

    #[test]
    fn bad_keys_and_ids_are_refused_without_showing_secrets() {
        for bad in [
            "",
            "k1",
            "k1=s3cr3t",
            "k 1=s3cr3t0123456789abcdef0123456789",
        ] {
            let error = RefKeys::parse(&Secret::new(bad)).expect_err(bad);
            assert!(!error.to_string().contains("s3cr3t"), "{error}");
        }
        let twice = format!("k1={},k1={}", secret('a'), secret('b'));
        assert!(RefKeys::parse(&Secret::new(twice)).is_err());
        let keys = keys(&format!("k1={}", secret('a')));
        let until = NOW + time::Duration::days(1);
        assert_eq!(keys.sign(PAGE, "", until), Err(RefError::BadExternalId));
        assert_eq!(
            keys.sign(PAGE, "a\u{0}b", until),
            Err(RefError::BadExternalId)
        );
        let long = "x".repeat(300);
        assert!(matches!(
            keys.sign(PAGE, &long, until),
            Err(RefError::TooLong { len: 300, .. })
        ));
        assert!(!format!("{keys:?}").contains(&secret('a')));
    }
}
