//! `appsecret_proof` in Meta's time-stamped form (docs/messenger-platform.md §2). Owns only the
//! HMAC; attaching it (and `appsecret_time`) to a request is the client's job.

use herald_core::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `hex(HMAC-SHA256(key = app_secret, msg = access_token + "|" + unix_secs))`, lowercase.
///
/// Send it as `appsecret_proof` together with `appsecret_time = unix_secs`; Meta rejects such
/// proofs after five minutes, so compute one per call.
pub fn appsecret_proof(secret: &Secret, token: &Secret, unix_secs: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(token.expose().as_bytes());
    mac.update(b"|");
    mac.update(unix_secs.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently with Python:
    // hmac.new(key, msg, hashlib.sha256).hexdigest()
    #[test]
    fn matches_independent_hmac_vectors() {
        let check = |secret: &str, token: &str, secs: u64, expected: &str| {
            let proof = appsecret_proof(&Secret::new(secret), &Secret::new(token), secs);
            assert_eq!(
                proof, expected,
                "secret {secret:?}, token {token:?}, secs {secs}"
            );
        };
        check(
            "app-secret-123",
            "EAAB-token",
            1_700_000_000,
            "0708eb1f2a82c2c9c37058bb06ad6cecce2f1089009fc61c0528737a950bc4ec",
        );
        check(
            "s",
            "t",
            0,
            "b9fd855096cf54a0eb00b32ec2639799e7c9c08c84946c1e39b4b3b73e37630c",
        );
    }
}
