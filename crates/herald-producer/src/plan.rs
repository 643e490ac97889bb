//! Planning: what happens to each user of a segment, decided without I/O. A user the filters
//! leave out gets nothing; every other user (the "considered") becomes exactly one `SendJob` or
//! one `skipped` `DeliveryResult` with its reason, in the order: duplicate, blank PSID / window,
//! render and Meta's limits.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use herald_core::campaign::Campaign;
use herald_core::local::{JobQuietHours, next_local};
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

/// When one user's job is due and what the worker checks again when it sends.
struct Timing {
    due: OffsetDateTime,
    window_closes_at: Option<OffsetDateTime>,
    quiet_hours: Option<JobQuietHours>,
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
    /// What each user already received in the campaign's frequency-cap period, when capped.
    caps: Option<CapCounts>,
    /// A trigger's event: its key ends the job id (`<run>:<user>:<fire>`), since one person
    /// may fire a campaign more than once in a run's day.
    fire: Option<String>,
    /// How long after planning a job is due at the earliest (a trigger's `delay`).
    delay: std::time::Duration,
}

/// A capped campaign's view of the page: messages each user received from it (or has on their
/// way from other runs) in the cap's period. Users who got none are absent.
#[derive(Debug, Clone, Default)]
pub struct CapCounts {
    /// The cap's `max`.
    pub max: u32,
    /// The cap's period as written (`24h`), for the skip's message.
    pub per: String,
    /// External id → messages in the period.
    pub counts: HashMap<String, u32>,
}

impl<'a> Planner<'a> {
    /// A planner for `run_id` of `campaign`.
    pub fn new(campaign: &'a Campaign, run_id: impl Into<String>) -> Self {
        Self {
            campaign,
            run_id: run_id.into(),
            seen: HashSet::new(),
            hasher: std::hash::RandomState::new(),
            caps: None,
            fire: None,
            delay: std::time::Duration::ZERO,
        }
    }

    /// A planner for one event `fire` (a short key naming it) of a `[trigger]` campaign, in
    /// the run `run_id`: the job id is `<run_id>:<external_id>:<fire>` and the job is due
    /// `delay` after planning (then the user's local time and quiet hours apply from there).
    pub fn for_fire(
        campaign: &'a Campaign,
        run_id: impl Into<String>,
        fire: impl Into<String>,
        delay: std::time::Duration,
    ) -> Self {
        Self {
            fire: Some(fire.into()),
            delay,
            ..Self::new(campaign, run_id)
        }
    }

    /// Skips users who reached the campaign's frequency cap (`FrequencyCap`).
    pub fn with_caps(mut self, caps: Option<CapCounts>) -> Self {
        self.caps = caps;
        self
    }

    /// Whether jobs of this planner reserve their user under a frequency cap.
    pub fn capped(&self) -> bool {
        self.caps.is_some()
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
        let mut job_id = SendJob::job_id_for(&self.run_id, &user.external_id);
        if let Some(fire) = &self.fire {
            job_id.push(':');
            job_id.push_str(fire);
        }
        let key = self.key(&user.external_id);
        if !self.seen.insert(key) {
            return Some(self.skip(user, job_id, &SkipReason::Duplicate, now));
        }
        if let Err(reason) = admit(self.campaign, user, now) {
            return Some(self.skip(user, job_id, &reason, now));
        }
        if let Some(caps) = &self.caps
            && caps.counts.get(&user.external_id).copied().unwrap_or(0) >= caps.max
        {
            let reason = SkipReason::FrequencyCap {
                max: caps.max,
                per: caps.per.clone(),
            };
            return Some(self.skip(user, job_id, &reason, now));
        }
        let timing = self.timing(user, now);
        if timing
            .window_closes_at
            .is_some_and(|closes| closes <= timing.due)
        {
            // The window closes before the user's local time or the end of quiet hours.
            return Some(self.skip(user, job_id, &SkipReason::OutsideWindow, now));
        }
        match self.campaign.render_request(user, &job_id) {
            Ok(body) => Some(Planned::Job(self.job(user, job_id, body, timing, now))),
            Err(reason) => Some(self.skip(user, job_id, &reason, now)),
        }
    }

    /// When the user's job is due: at once, or their next `local_time`, moved to the end of
    /// quiet hours when it falls inside them (both in the user's zone).
    fn timing(&self, user: &User, now: OffsetDateTime) -> Timing {
        let window_closes_at = window_closes(self.campaign, user);
        let local_time = self.campaign.schedule().local_time;
        let quiet = self.campaign.delivery().quiet_hours;
        let now = now + self.delay;
        if local_time.is_none() && quiet.is_none() {
            // No clock of the user's matters: no zone lookup on the per-row path.
            return Timing {
                due: now,
                window_closes_at,
                quiet_hours: None,
            };
        }
        let (zone_name, zone) = self.campaign.user_zone(user);
        let mut due = match local_time {
            Some(at) => next_local(now, at, &zone),
            None => now,
        };
        if let Some(end) = quiet.and_then(|quiet| quiet.end_after(due, &zone)) {
            due = end;
        }
        Timing {
            due,
            window_closes_at,
            quiet_hours: quiet.map(|quiet| quiet.for_job(&zone_name)),
        }
    }

    fn key(&self, external_id: &str) -> u64 {
        self.hasher.hash_one(external_id)
    }

    fn job(
        &self,
        user: &User,
        job_id: String,
        body: Vec<u8>,
        timing: Timing,
        now: OffsetDateTime,
    ) -> SendJob {
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
            // A job due later expires that long after it is due, not after it is queued.
            not_after: timing.due.max(now) + delivery.expires_after,
            enqueued_at: now,
            not_before: (timing.due > now).then_some(timing.due),
            window_closes_at: timing.window_closes_at,
            quiet_hours: timing.quiet_hours,
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

    /// A trigger's job: the event's key ends the job id, and it is due `delay` later (and
    /// expires that long after it is due).
    #[test]
    fn a_fire_names_its_event_and_waits_its_delay() {
        let campaign = Campaign::from_toml(CAMPAIGN).expect("valid campaign");
        let now = datetime!(2026-11-21 12:00 UTC);
        let delay = std::time::Duration::from_secs(5);
        let mut planner = Planner::for_fire(&campaign, "c@2026-11-21", "ab12", delay);
        let Some(Planned::Job(job)) = planner.plan(&user("u1", "11", "BR"), now) else {
            panic!("expected a job");
        };
        assert_eq!(job.job_id, "c@2026-11-21:u1:ab12");
        assert_eq!(job.not_before, Some(now + delay));
        assert_eq!(
            job.not_after,
            now + delay + campaign.delivery().expires_after
        );
        let mut at_once = Planner::for_fire(&campaign, "r", "f", std::time::Duration::ZERO);
        let Some(Planned::Job(job)) = at_once.plan(&user("u1", "11", "BR"), now) else {
            panic!("expected a job");
        };
        assert_eq!((job.job_id.as_str(), job.not_before), ("r:u1:f", None));
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

    /// Local-time delivery and quiet hours: each user's job is due at their next 10:00 in
    /// their zone, moved past quiet hours, expires that long after it is due, and is skipped
    /// when the user's window closes first.
    #[test]
    fn jobs_are_due_at_each_users_local_time() {
        let source = CAMPAIGN.replacen(
            "priority = \"normal\"",
            "priority = \"normal\"\nquiet_hours = { start = \"09:30\", end = \"10:15\" }",
            1,
        ) + "[schedule]\nlocal_time = \"10:00\"\n";
        let campaign = Campaign::from_toml(&source).expect("valid campaign");
        let mut planner = Planner::new(&campaign, "run1");
        let now = datetime!(2026-12-07 12:00 UTC);
        let job = |planned: Option<Planned>| match planned {
            Some(Planned::Job(job)) => job,
            other => panic!("{}", outcome(other)),
        };
        // São Paulo (UTC-3): 09:00 now; 10:00 is quiet, so 10:15 local = 13:15 UTC.
        let sp = job(planner.plan(
            &user("a", "1", "BR").with_attr("time_zone", "America/Sao_Paulo"),
            now,
        ));
        assert_eq!(sp.not_before, Some(datetime!(2026-12-07 13:15 UTC)));
        assert_eq!(
            sp.not_after,
            datetime!(2026-12-07 19:15 UTC),
            "6 h after it is due"
        );
        let quiet = sp.quiet_hours.expect("quiet hours travel with the job");
        assert_eq!(quiet.timezone, "America/Sao_Paulo");
        // Tokyo (UTC+9): 21:00 now; tomorrow's 10:15 = 01:15 UTC.
        let tokyo = job(planner.plan(
            &user("b", "2", "BR").with_attr("time_zone", "Asia/Tokyo"),
            now,
        ));
        assert_eq!(tokyo.not_before, Some(datetime!(2026-12-08 01:15 UTC)));
        // No zone: UTC, tomorrow's 10:15.
        let utc = job(planner.plan(&user("c", "3", "BR"), now));
        assert_eq!(utc.not_before, Some(datetime!(2026-12-08 10:15 UTC)));
        // Wrote 20 h ago: the window closes at 16:00 UTC, after São Paulo's 13:15: a job.
        let recent = User {
            last_inbound_at: Some(datetime!(2026-12-06 16:00 UTC)),
            ..user("d", "4", "BR").with_attr("time_zone", "America/Sao_Paulo")
        };
        assert!(matches!(planner.plan(&recent, now), Some(Planned::Job(_))));
        // In Tokyo the same window closes before tomorrow's 10:15: skipped now.
        let closing = User {
            last_inbound_at: Some(datetime!(2026-12-06 16:00 UTC)),
            ..user("e", "5", "BR").with_attr("time_zone", "Asia/Tokyo")
        };
        assert_eq!(outcome(planner.plan(&closing, now)), "skip outside_window");
    }
}
