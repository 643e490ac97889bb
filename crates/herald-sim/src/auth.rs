//! Page token and `appsecret_proof` checks (docs/messenger-platform.md §1.1, §2): which page a call
//! is for, whether its token is valid or revoked, and whether the proof matches. Comparisons are
//! constant-time. It does not parse bodies or count anything.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::graph_error::GraphError;
use crate::live::Live;

/// How long a time-stamped proof stays valid (Meta: five minutes).
const PROOF_MAX_AGE_SECS: i64 = 300;

/// The page named in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageRef<'a> {
    Id(&'a str),
    /// `/me/messages`: the page the token belongs to.
    Me,
}

/// Credentials gathered from the query string, form fields and `Authorization: Bearer`.
#[derive(Default)]
pub(crate) struct Credentials<'a> {
    pub(crate) token: Option<Cow<'a, str>>,
    pub(crate) proof: Option<Cow<'a, str>>,
    pub(crate) proof_time: Option<Cow<'a, str>>,
}

impl<'a> Credentials<'a> {
    /// Keeps `value` if `key` is a credential (the first value wins); otherwise hands it back.
    pub(crate) fn offer(&mut self, key: &str, value: Cow<'a, str>) -> Option<Cow<'a, str>> {
        let slot = match key {
            "access_token" => &mut self.token,
            "appsecret_proof" => &mut self.proof,
            "appsecret_time" => &mut self.proof_time,
            _ => return Some(value),
        };
        if slot.is_none() {
            *slot = Some(value);
        }
        None
    }

    /// Reads the credentials in a query string.
    pub(crate) fn from_query(query: Option<&'a str>) -> Self {
        let mut credentials = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            credentials.offer(&key, value);
        }
        credentials
    }

    /// Uses an `Authorization: Bearer` token when no `access_token` parameter was given.
    pub(crate) fn offer_bearer(&mut self, header: Option<&'a [u8]>) {
        let Some(header) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
            return;
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "));
        if let Some(token) = token {
            self.offer("access_token", Cow::Borrowed(token.trim()));
        }
    }
}

/// Checks the token and the proof; returns the page id the call is for.
pub(crate) fn authorize<'r>(
    live: &'r Live,
    page: PageRef<'r>,
    credentials: &Credentials<'_>,
    now_secs: i64,
) -> Result<&'r str, GraphError> {
    let token = credentials.token.as_deref().unwrap_or("");
    if token.is_empty() {
        return Err(GraphError::missing_token());
    }
    let page_id = if live.config.tokens.is_empty() {
        match page {
            PageRef::Id(id) => id,
            PageRef::Me => "me",
        }
    } else {
        match page {
            PageRef::Id(id) => {
                let expected = live
                    .config
                    .tokens
                    .get(id)
                    .map(String::as_bytes)
                    .unwrap_or_default();
                if live.is_revoked(id) {
                    return Err(GraphError::revoked_token());
                }
                if !bool::from(expected.ct_eq(token.as_bytes())) || expected.is_empty() {
                    return Err(GraphError::bad_token());
                }
                id
            }
            PageRef::Me => live
                .page_for_token(token)
                .ok_or_else(GraphError::bad_token)?,
        }
    };
    if live.is_revoked(page_id) {
        return Err(GraphError::revoked_token());
    }
    if let Some(key) = &live.proof_key {
        check_proof(key, token, credentials, now_secs)?;
    }
    Ok(page_id)
}

/// Accepts the classic proof `hex(HMAC(secret, token))` and the time-stamped one
/// `hex(HMAC(secret, token + "|" + appsecret_time))` when `appsecret_time` is under five minutes old.
fn check_proof(
    key: &Hmac<Sha256>,
    token: &str,
    credentials: &Credentials<'_>,
    now_secs: i64,
) -> Result<(), GraphError> {
    let proof = credentials.proof.as_deref().unwrap_or("");
    if proof.is_empty() {
        return Err(GraphError::proof_missing());
    }
    let mut given = [0u8; 32];
    if hex::decode_to_slice(proof, &mut given).is_err() {
        return Err(GraphError::proof_invalid());
    }
    let mut classic = key.clone();
    classic.update(token.as_bytes());
    let mut ok = classic.finalize().into_bytes().as_slice().ct_eq(&given[..]);
    // The MAC covers appsecret_time exactly as sent.
    let fresh_time = credentials.proof_time.as_deref().filter(|t| {
        t.parse::<i64>()
            .is_ok_and(|secs| (now_secs - secs).abs() <= PROOF_MAX_AGE_SECS)
    });
    if let Some(time) = fresh_time {
        let mut stamped = key.clone();
        stamped.update(token.as_bytes());
        stamped.update(b"|");
        stamped.update(time.as_bytes());
        ok |= stamped.finalize().into_bytes().as_slice().ct_eq(&given[..]);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(GraphError::proof_invalid())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::config::SimConfig;

    const NOW: i64 = 1_760_000_000;

    fn proof(secret: &str, message: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn check(
        live: &Live,
        page: PageRef<'_>,
        query: &str,
        expected: Result<&str, (u32, Option<u32>)>,
    ) {
        let credentials = Credentials::from_query(Some(query));
        let actual = authorize(live, page, &credentials, NOW).map_err(|e| (e.code, e.subcode));
        assert_eq!(actual, expected, "{query}");
    }

    #[test]
    fn tokens_per_page() {
        let mut config = SimConfig::default();
        config.tokens.insert("1".into(), "tok-1".into());
        config.tokens.insert("2".into(), "tok-2".into());
        let live = Live::new(config, HashSet::from(["2".to_owned()]));
        check(&live, PageRef::Id("1"), "access_token=tok-1", Ok("1"));
        check(&live, PageRef::Me, "access_token=tok-1", Ok("1"));
        check(
            &live,
            PageRef::Id("1"),
            "access_token=tok-2",
            Err((190, None)),
        );
        check(
            &live,
            PageRef::Id("3"),
            "access_token=tok-1",
            Err((190, None)),
        );
        check(&live, PageRef::Id("1"), "", Err((190, None)));
        check(&live, PageRef::Me, "access_token=nope", Err((190, None)));
        check(
            &live,
            PageRef::Id("2"),
            "access_token=tok-2",
            Err((190, Some(460))),
        );
        check(
            &live,
            PageRef::Me,
            "access_token=tok-2",
            Err((190, Some(460))),
        );
        let open = Live::new(SimConfig::default(), HashSet::new());
        check(&open, PageRef::Id("9"), "access_token=anything", Ok("9"));
        check(&open, PageRef::Id("9"), "access_token=", Err((190, None)));
    }

    #[test]
    fn appsecret_proof_forms() {
        let config = SimConfig {
            app_secret: Some("shh".into()),
            ..SimConfig::default()
        };
        let live = Live::new(config, HashSet::new());
        let page = PageRef::Id("1");
        let classic = proof("shh", "tok");
        let stamped = proof("shh", &format!("tok|{NOW}"));
        let old = proof("shh", &format!("tok|{}", NOW - 301));
        check(
            &live,
            page,
            &format!("access_token=tok&appsecret_proof={classic}"),
            Ok("1"),
        );
        check(
            &live,
            page,
            &format!("access_token=tok&appsecret_proof={stamped}&appsecret_time={NOW}"),
            Ok("1"),
        );
        let stale = format!(
            "access_token=tok&appsecret_proof={old}&appsecret_time={}",
            NOW - 301
        );
        check(&live, page, &stale, Err((100, None)));
        check(
            &live,
            page,
            &format!("access_token=tok&appsecret_proof={stamped}"),
            Err((100, None)),
        );
        check(
            &live,
            page,
            "access_token=tok&appsecret_proof=zz",
            Err((100, None)),
        );
        check(&live, page, "access_token=tok", Err((100, None)));
        let wrong_secret = proof("other", "tok");
        check(
            &live,
            page,
            &format!("access_token=tok&appsecret_proof={wrong_secret}"),
            Err((100, None)),
        );
    }

    #[test]
    fn bearer_is_used_only_without_a_parameter() {
        let mut credentials = Credentials::from_query(Some("access_token=q"));
        credentials.offer_bearer(Some(b"Bearer h"));
        assert_eq!(credentials.token.as_deref(), Some("q"));
        let mut credentials = Credentials::from_query(None);
        credentials.offer_bearer(Some(b"Bearer h"));
        assert_eq!(credentials.token.as_deref(), Some("h"));
    }
}
