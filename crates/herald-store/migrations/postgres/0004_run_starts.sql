-- Idempotency keys of run starts: the same key for the same campaign within the key's lifetime
-- returns the run it started instead of starting another. `run_id` is NULL while the first
-- request is still creating its run; `fingerprint` identifies the document it was used with.
CREATE TABLE run_starts (
    campaign_id TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT NOT NULL,
    run_id TEXT COLLATE "C",
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, idempotency_key)
);
