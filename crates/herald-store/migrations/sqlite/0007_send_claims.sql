-- Which copy of a job that may have been sent already may send it now: a worker claims the
-- send just before its Graph call, so two copies of one job (a hold republished before a
-- crash, a resumed run) cannot both go out. A claim lapses at expires_at_ms.
CREATE TABLE send_claims (
    job_id        TEXT NOT NULL PRIMARY KEY,
    holder        TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
