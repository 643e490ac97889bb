//! URLs that may carry a password (`HERALD_DATABASE_URL`, `HERALD_AMQP_URL`) shown safely:
//! `redact_url` masks the password of the user info and any `password` query value
//! (`postgres://herald:***@db/herald`), and `scrub` masks that password wherever a message
//! quotes it. Both work on text, so a URL too broken to parse is masked too. Every error or
//! log line that names such a URL goes through them.

const MASK: &str = "***";

/// `url` with its password masked; everything else (scheme, user, host, path) kept. Text that
/// is not shaped like a URL (no `scheme://`) keeps only its scheme: which part of it is a
/// password cannot be told.
pub fn redact_url(url: &str) -> String {
    if !url.contains("://") {
        return match url.split_once(':') {
            Some((scheme, _)) if is_scheme(scheme) => format!("{scheme}:{MASK}"),
            _ => MASK.to_owned(),
        };
    }
    let (head, query) = split_query(url);
    let mut out = match userinfo_span(head) {
        Some((start, end)) => {
            let userinfo = &head[start..end];
            match userinfo.split_once(':') {
                Some((user, _)) if is_plain(user) => {
                    format!("{}{user}:{MASK}{}", &head[..start], &head[end..])
                }
                Some(_) => format!("{}{MASK}{}", &head[..start], &head[end..]),
                // A user alone is no secret, unless it is not a user name at all.
                None if is_plain(userinfo) => head.to_owned(),
                None => format!("{}{MASK}{}", &head[..start], &head[end..]),
            }
        }
        None => head.to_owned(),
    };
    if let Some((separator, query)) = query {
        out.push(separator);
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_password_key(key) => format!("{key}={MASK}"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// `text` with every appearance of `url`'s password (as written, and percent-decoded) masked.
pub fn scrub(text: &str, url: &str) -> String {
    let mut text = text.to_owned();
    for password in passwords(url) {
        if !password.is_empty() {
            text = text.replace(&password, MASK);
        }
    }
    text
}

/// The passwords `url` carries, as written and percent-decoded.
fn passwords(url: &str) -> Vec<String> {
    let (head, query) = split_query(url);
    let mut found = Vec::new();
    if let Some((start, end)) = userinfo_span(head)
        && let Some((_, password)) = head[start..end].split_once(':')
    {
        found.push(password.to_owned());
    }
    if let Some((_, query)) = query {
        for pair in query.split('&') {
            if let Some((key, value)) = pair.split_once('=')
                && is_password_key(key)
            {
                found.push(value.to_owned());
            }
        }
    }
    let decoded: Vec<String> = found.iter().map(|p| percent_decode(p)).collect();
    found.extend(decoded);
    // Longest first, so a password containing another is masked whole.
    found.sort_by_key(|p| std::cmp::Reverse(p.len()));
    found
}

/// The URL before its query, and the query with its separator.
fn split_query(url: &str) -> (&str, Option<(char, &str)>) {
    match url.find(['?', '#']) {
        Some(at) => {
            let separator = if url[at..].starts_with('?') { '?' } else { '#' };
            (&url[..at], Some((separator, &url[at + 1..])))
        }
        None => (url, None),
    }
}

/// Where the user info is in `head` (the URL before its query): between `://` (or the start,
/// without one) and the last `@`. The last `@`, because a password may hold an unencoded one;
/// from the start, because without `://` a scheme cannot be told from a user.
fn userinfo_span(head: &str) -> Option<(usize, usize)> {
    let at = head.rfind('@')?;
    let start = match head.find("://") {
        Some(scheme_end) if scheme_end < at => scheme_end + 3,
        _ => 0,
    };
    Some((start, at))
}

fn is_scheme(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Characters a URL's user name may hold as written (unreserved, sub-delims, `%`).
fn is_plain(user: &str) -> bool {
    user.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=%".contains(c))
}

fn is_password_key(key: &str) -> bool {
    key.to_ascii_lowercase().ends_with("password")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        for (url, expected) in [
            (
                "postgres://herald:s3cret@db:5432/herald?sslmode=require",
                "postgres://herald:***@db:5432/herald?sslmode=require",
            ),
            (
                "amqp://guest:s3cret@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            ("amqp://guest@host/", "amqp://guest@host/"),
            ("sqlite://herald.db", "sqlite://herald.db"),
            ("postgres://u:p@ss/w@rd@db/x", "postgres://u:***@db/x"),
            (
                "postgres://db/x?user=u&password=s3cret&sslmode=disable",
                "postgres://db/x?user=u&password=***&sslmode=disable",
            ),
            ("postgres://u:s3cret@[::1", "postgres://u:***@[::1"),
            ("u:s3cret@host", "u:***"),
            ("postgres:u:s3cret@host", "postgres:***"),
            ("not a url s3cret", "***"),
            ("postgres://herald s3cret@db/x", "postgres://***@db/x"),
            ("postgres://her ald:s3cret@db/x", "postgres://***@db/x"),
            ("", "***"),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn scrub_masks_the_password_as_written_and_decoded() {
        let url = "postgres://herald:p%40ss%2Fw0rd@db/herald?sslpassword=k3y";
        let text = "failed for p%40ss%2Fw0rd, p@ss/w0rd and k3y";
        assert_eq!(scrub(text, url), "failed for ***, *** and ***");
        assert_eq!(scrub("nothing here", "postgres://db/x"), "nothing here");
    }
}
