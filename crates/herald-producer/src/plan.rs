//! Planning: what happens to each user of a segment, decided without I/O. A user the filters
//! leave out gets nothing; every other user (the "considered") becomes exactly one `SendJob` or
//! one `skipped` `DeliveryResult` with its reason, in the order: duplicate, blank PSID / window,
//! render and Meta's limits.

use std::collections::HashSet;
use std::hash::BuildHasher;

use herald_core::campaign::Campaign;
use herald_core::{
    DeliveryResult, JOB_VERSION, RESULT_VERSION, ResultStatus, SendJob, SkipReason, User, admit,
    window_closes,
};
use serde_json::value::RawValue;
use time::OffsetDateTime;

/// What the producer does with one considered user.
#[derive(Debug)]
pub enum Planned {
    /// Publish this job to `herald.jobs`.
    Job(SendJob),
    /// Publish this `skipped` result to `herald.results`.
    Skip {
        /// The result.
        result: DeliveryResult,
        /// Why, as a closed-set label.
        reason: &'static str,
    },
}

/// Turns users into `Planned` items for one run.
pub struct Planner<'a> {
    campaign: &'a Campaign,
    run_id: String,
    /// Hashes of the external ids seen so far: 16 bytes a user instead of the whole id keeps a
    /// million-user run within a few tens of MB. A 64-bit collision (about 1 in 3·10^7 for a
    /// million users) would skip one user as a duplicate; the result says so.
    seen: HashSet<u64>,
    hasher: std::hash::RandomState,
}

impl<'a> Planner<'a> {
    /// A planner for `run_id` of `campaign`.
    pub fn new(campaign: &'a Campaign, run_id: impl Into<String>) -> Self {
        Self {
            campaign,
            run_id: run_id.into(),
            seen: HashSet::new(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The run this planner builds jobs for.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Marks a user as already handled (used when resuming: rows before the checkpoint were
    /// published by the earlier attempt). Returns whether the user is considered at all.
    pub fn remember(&mut self, user: &User, now: OffsetDateTime) -> bool {
        if !self.campaign.matches(user, now) {
            return false;
        }
        let key = self.key(&user.external_id);
        self.seen.insert(key);
        true
    }

    /// Plans one user; `None` when the segment's filters leave the user out.
    pub fn plan(&mut self, user: &User, now: OffsetDateTime) -> Option<Planned> {
        if !self.campaign.matches(user, now) {
            return None;
        }
        let job_id = SendJob::job_id_for(&self.run_id, &user.external_id);
        let key = self.key(&user.external_id);
        if !self.seen.insert(key) {
            return Some(self.skip(user, job_id, &SkipReason::Duplicate, now));
        }
        if let Err(reason) = admit(self.campaign, user, now) {
            return Some(self.skip(user, job_id, &reason, now));
        }
        match self.campaign.render_request(user, &job_id) {
            Ok(body) => Some(Planned::Job(self.job(user, job_id, body, now))),
            Err(reason) => Some(self.skip(user, job_id, &reason, now)),
        }
    }

    fn key(&self, external_id: &str) -> u64 {
        self.hasher.hash_one(external_id)
    }

    fn job(&self, user: &User, job_id: String, body: Vec<u8>, now: OffsetDateTime) -> SendJob {
        let delivery = self.campaign.delivery();
        // The renderer writes JSON with serde_json, so it is valid UTF-8 and valid JSON.
        let text = String::from_utf8(body).expect("rendered body is UTF-8");
        let request = RawValue::from_string(text).expect("rendered body is JSON");
        SendJob {
            v: JOB_VERSION,
            job_id,
            run_id: self.run_id.clone(),
            campaign_id: self.campaign.id().to_owned(),
            page_id: self.campaign.page_id().to_owned(),
            external_id: user.external_id.clone(),
            request,
            rate_per_sec: delivery.rate_per_sec,
            max_attempts: delivery.max_attempts,
            not_after: now + delivery.expires_after,
            enqueued_at: now,
            not_before: None,
            window_closes_at: window_closes(self.campaign, user),
        }
    }

    fn skip(
        &self,
        user: &User,
        job_id: String,
        reason: &SkipReason,
        now: OffsetDateTime,
    ) -> Planned {
        let result = DeliveryResult {
            v: RESULT_VERSION,
            job_id,
            run_id: self.run_id.clone(),
            campaign_id: self.campaign.id().to_owned(),
            external_id: user.external_id.clone(),
            page_id: self.campaign.page_id().to_owned(),
            status: ResultStatus::Skipped,
            message_id: None,
            error: Some(reason.to_error_info()),
            attempts: 0,
            finished_at: now,
        };
        Planned::Skip {
            result,
            reason: reason.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const CAMPAIGN: &str = herald_core::campaign::EXAMPLE_TOML;

    fn user(id: &str, psid: &str, country: &str) -> User {
        User::new(id, psid)
            .with_attr("country", country)
            .with_attr("promo_code", "X1")
    }

    fn outcome(planned: Option<Planned>) -> String {
        match planned {
            None => "filtered".into(),
            Some(Planned::Job(job)) => format!("job {}", job.request.get()),
            Some(Planned::Skip { reason, .. }) => format!("skip {reason}"),
        }
    }

    #[test]
    fn each_considered_user_gets_one_job_or_one_skip() {
        let campaign = Campaign::from_toml(CAMPAIGN).expect("valid campaign");
        let mut planner = Planner::new(&campaign, "run1");
        let now = datetime!(2026-11-21 12:00 UTC);
        let stale = User {
            last_inbound_at: Some(datetime!(2026-11-19 12:00 UTC)),
            ..user("u5", "55", "BR")
        };
        let cases = [
            (
                user("u1", "11", "BR").with_attr("first_name", "Zoë"),
                "job {\"recipient\":{\"id\":\"11\"},\"messaging_type\":\"UPDATE\",\"message\":{\"text\":\"Hi Zoë, your code is X1.\",\"metadata\":\"run1:u1\"}}",
            ),
            (user("u2", "22", "PT"), "filtered"),
            (user("u1", "12", "BR"), "skip duplicate"),
            (user("u3", "  ", "BR"), "skip blank_psid"),
            (stale, "skip outside_window"),
            (
                user("u6", "66", "BR"),
                "job {\"recipient\":{\"id\":\"66\"},\"messaging_type\":\"UPDATE\",\"message\":{\"text\":\"Hi there, your code is X1.\",\"metadata\":\"run1:u6\"}}",
            ),
        ];
        for (user, expected) in cases {
            assert_eq!(
                outcome(planner.plan(&user, now)),
                expected,
                "user {}",
                user.external_id
            );
        }
    }

    #[test]
    fn jobs_carry_the_contract_fields() {
        let campaign = Campaign::from_toml(CAMPAIGN).expect("valid campaign");
        let mut planner = Planner::new(&campaign, "run1");
        let now = datetime!(2026-11-21 12:00 UTC);
        let Some(Planned::Job(job)) = planner.plan(&user("u1", "11", "BR"), now) else {
            panic!("expected a job")
        };
        assert_eq!(
            (job.v, job.job_id.as_str(), job.run_id.as_str()),
            (1, "run1:u1", "run1")
        );
        assert_eq!(
            (job.campaign_id.as_str(), job.page_id.as_str()),
            ("welcome-back", "1000000001")
        );
        assert_eq!((job.rate_per_sec, job.max_attempts), (250, 5));
        assert_eq!(job.not_after, datetime!(2026-11-21 18:00 UTC));
        let skip = planner.plan(&user("u1", "11", "BR"), now);
        let Some(Planned::Skip { result, .. }) = skip else {
            panic!("expected a skip")
        };
        assert_eq!(result.status, ResultStatus::Skipped);
        assert_eq!(result.routing_key(), "skipped.welcome-back");
        assert!(
            result
                .error
                .expect("reason")
                .message
                .starts_with("duplicate:")
        );
    }

    #[test]
    fn remembered_users_count_as_duplicates_after_resume() {
        let campaign = Campaign::from_toml(CAMPAIGN).expect("valid campaign");
        let mut planner = Planner::new(&campaign, "run1");
        let now = datetime!(2026-11-21 12:00 UTC);
        assert!(planner.remember(&user("u1", "11", "BR"), now));
        assert!(!planner.remember(&user("u2", "22", "PT"), now));
        assert_eq!(
            outcome(planner.plan(&user("u1", "11", "BR"), now)),
            "skip duplicate"
        );
    }
}
