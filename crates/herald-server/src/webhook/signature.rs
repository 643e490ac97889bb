//! The two secrets of the webhook, checked in constant time (docs/messenger-platform.md §5.1–5.2):
//! the handshake's `hub.verify_token`, and `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of
//! the raw body bytes under the app secret. The legacy `X-Hub-Signature` (sha1) is never consulted.
//! What the HTTP answer is, and what happens to a verified body, is `mod.rs`'s business.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header Meta signs every POST with.
pub(crate) const META_SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Why a POST's signature is not accepted; a bounded label for logs, never the header's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    Missing,
    /// Not `sha256=` followed by 64 hex digits.
    Malformed,
    /// Well-formed, but not the HMAC of this body under our app secret.
    Mismatch,
    /// We have no app secret: nothing can be verified, so nothing is accepted.
    NoSecret,
}

impl SignatureError {
    /// Bounded label for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Mismatch => "mismatch",
            Self::NoSecret => "no_app_secret",
        }
    }
}

/// The 32 bytes a `sha256=<hex>` header value claims. Meta writes lowercase hex; uppercase is
/// accepted too, since it is the same number.
pub(crate) fn parse_signature(header: Option<&[u8]>) -> Result<[u8; 32], SignatureError> {
    let value = header.ok_or(SignatureError::Missing)?;
    let value = value.trim_ascii();
    let (scheme, hex_digits) = value.split_at_checked(7).ok_or(SignatureError::Malformed)?;
    if !scheme.eq_ignore_ascii_case(b"sha256=") {
        return Err(SignatureError::Malformed);
    }
    let mut claimed = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut claimed).map_err(|_| SignatureError::Malformed)?;
    Ok(claimed)
}

/// `sha256=<lowercase hex>`, as Meta writes the header.
pub(crate) fn format_signature(signature: &[u8; 32]) -> String {
    format!("sha256={}", hex::encode(signature))
}

/// Whether `claimed` is HMAC-SHA256(`app_secret`, `body`), compared in constant time. An empty
/// secret verifies nothing: anyone could compute an HMAC under it.
pub(crate) fn verify_body(
    app_secret: &[u8],
    body: &[u8],
    claimed: &[u8; 32],
) -> Result<(), SignatureError> {
    if app_secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(app_secret).map_err(|_| SignatureError::NoSecret)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(claimed)
        .map_err(|_| SignatureError::Mismatch)
}

/// Whether the handshake's `hub.verify_token` is ours. Both sides are hashed first, so the
/// comparison takes the same time whatever the lengths; an empty configured token matches
/// nothing.
pub(crate) fn verify_token_matches(expected: &str, given: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let (expected, given) = (Sha256::digest(expected), Sha256::digest(given));
    expected.ct_eq(&given).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures() {
        let body = br#"{"object":"page","entry":[]}"#;
        let good = sign("s3cret", body);
        let check = |header: Option<&str>, secret: &str, expected: Result<(), SignatureError>| {
            let outcome = parse_signature(header.map(str::as_bytes))
                .and_then(|claimed| verify_body(secret.as_bytes(), body, &claimed));
            assert_eq!(outcome, expected, "{header:?}");
        };
        check(Some(&good), "s3cret", Ok(()));
        check(
            Some(&good.to_uppercase().replace("SHA256=", "sha256=")),
            "s3cret",
            Ok(()),
        );
        check(Some(&good.replace("sha256=", "SHA256=")), "s3cret", Ok(()));
        check(Some(&format!(" {good} ")), "s3cret", Ok(()));
        check(Some(&good), "other", Err(SignatureError::Mismatch));
        check(
            Some(&sign("s3cret", b"other body")),
            "s3cret",
            Err(SignatureError::Mismatch),
        );
        check(Some(&good), "", Err(SignatureError::NoSecret));
        check(None, "s3cret", Err(SignatureError::Missing));
        check(Some(""), "s3cret", Err(SignatureError::Malformed));
        check(Some("sha256="), "s3cret", Err(SignatureError::Malformed));
        check(
            Some(&good.replace("sha256=", "sha1=")),
            "s3cret",
            Err(SignatureError::Malformed),
        );
        check(
            Some(&good[..good.len() - 2]),
            "s3cret",
            Err(SignatureError::Malformed),
        );
        check(
            Some(&format!("{good}00")),
            "s3cret",
            Err(SignatureError::Malformed),
        );
        check(
            Some(&good.replace('a', "g")),
            "s3cret",
            Err(SignatureError::Malformed),
        );
        check(Some("sha256=é"), "s3cret", Err(SignatureError::Malformed));
    }

    #[test]
    fn rfc_4231_vector() {
        // RFC 4231 test case 2, as the simulator signs it.
        let claimed = parse_signature(Some(
            b"sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ))
        .unwrap();
        assert_eq!(
            verify_body(b"Jefe", b"what do ya want for nothing?", &claimed),
            Ok(())
        );
    }

    #[test]
    fn verify_tokens() {
        let check = |expected: &str, given: &str, ok: bool| {
            assert_eq!(
                verify_token_matches(expected, given),
                ok,
                "{expected:?} {given:?}"
            );
        };
        check("tok", "tok", true);
        check("tok", "tok ", false);
        check("tok", "TOK", false);
        check("tok", "", false);
        check("", "", false);
        check("", "x", false);
    }
}
