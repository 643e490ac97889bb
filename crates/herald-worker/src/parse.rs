//! From delivery bytes to a `SendJob`, or to the reason it is poison (not JSON, an unknown
//! version, missing or mistyped fields, values no job can have). The reason goes into the
//! `x-herald-reason` header of the dead-lettered copy; it names fields, never a PSID (recipients
//! live inside `request`, which is passed through unparsed).

use herald_core::SendJob;

/// Reads one job. `Err` holds the reason the message is poison.
pub(crate) fn parse_job(body: &[u8]) -> Result<SendJob, String> {
    let job: SendJob = herald_core::decode(body)?;
    if job.job_id.trim().is_empty() || job.page_id.trim().is_empty() {
        return Err("not a SendJob v1: job_id and page_id must not be blank".to_owned());
    }
    if job.rate_per_sec == 0 || job.max_attempts == 0 {
        return Err(
            "not a SendJob v1: rate_per_sec and max_attempts must be at least 1".to_owned(),
        );
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"v":1,"job_id":"r:u1","run_id":"r","campaign_id":"c","page_id":"1","external_id":"u1","request":{"recipient":{"id":"42"},"message":{"text":"hi"}},"rate_per_sec":250,"max_attempts":5,"not_after":"2030-01-01T00:00:00Z","enqueued_at":"2026-01-01T00:00:00Z"}"#;

    #[test]
    fn reasons_for_poison() {
        let check = |body: &str, expected: Result<&str, &str>| {
            let got = parse_job(body.as_bytes());
            match (got, expected) {
                (Ok(job), Ok(job_id)) => assert_eq!(job.job_id, job_id),
                (Err(reason), Err(wanted)) => {
                    assert!(reason.contains(wanted), "{body}: {reason}");
                    assert!(!reason.contains("line "), "{reason}");
                }
                (got, _) => panic!("{body}: {got:?}"),
            }
        };
        check(GOOD, Ok("r:u1"));
        check("not json at all", Err("not JSON"));
        check("", Err("not JSON"));
        check("[1,2]", Err("not a JSON object"));
        check(r#"{"v":2}"#, Err("unknown SendJob version 2"));
        check(r#"{"v":"1"}"#, Err("unknown SendJob version \"1\""));
        check(r#"{"job_id":"x"}"#, Err("missing field `v`"));
        check(r#"{"v":1}"#, Err("missing field `job_id`"));
        check(
            &GOOD.replace(r#""rate_per_sec":250"#, r#""rate_per_sec":0"#),
            Err("at least 1"),
        );
        check(
            &GOOD.replace(r#""page_id":"1""#, r#""page_id":" ""#),
            Err("blank"),
        );
        check(
            &GOOD.replace(r#""max_attempts":5"#, r#""max_attempts":5,"psid":"42""#),
            Err("unknown field `psid`"),
        );
    }
}
