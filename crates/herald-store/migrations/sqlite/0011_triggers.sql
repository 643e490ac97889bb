-- Campaigns sent when a person does something (`[trigger]`). Keep in step with
-- postgres/0011_triggers.sql.

-- What each stored campaign with a `[trigger]` waits for (its latest version; kept by
-- `put_campaign` and `delete_campaign`), so the ingest and `/users/track` find the campaigns
-- an event fires with one indexed lookup.
CREATE TABLE campaign_triggers (
    campaign_id  TEXT NOT NULL PRIMARY KEY,
    version      BIGINT NOT NULL,
    page_id      TEXT NOT NULL,
    kind         TEXT NOT NULL
        CHECK (kind IN ('event', 'postback', 'quick_reply', 'ref', 'keyword')),
    trigger_key  TEXT NOT NULL
);
CREATE INDEX campaign_triggers_key ON campaign_triggers (kind, trigger_key);
CREATE INDEX campaign_triggers_page ON campaign_triggers (page_id, kind);

-- One row per (campaign, event): the primary key is what makes an event delivered twice (a
-- webhook Meta retries, a track call a client repeats) fire once; the row is also the outbox
-- from which `herald serve` publishes the job (`pending` until the broker confirmed it).
CREATE TABLE trigger_fires (
    campaign_id          TEXT NOT NULL,
    event_key            TEXT NOT NULL,
    version              BIGINT NOT NULL,
    page_id              TEXT NOT NULL,
    external_id          TEXT,
    psid                 TEXT,
    properties           TEXT,
    received_at_ms       BIGINT NOT NULL,
    state                TEXT NOT NULL
        CHECK (state IN ('pending', 'published', 'skipped', 'filtered')),
    reason               TEXT,
    run_id               TEXT,
    job_id               TEXT,
    claims               BIGINT NOT NULL DEFAULT 0,
    first_claimed_at_ms  BIGINT,
    claimed_until_ms     BIGINT,
    settled_at_ms        BIGINT,
    PRIMARY KEY (campaign_id, event_key)
);
CREATE INDEX trigger_fires_pending ON trigger_fires (received_at_ms) WHERE state = 'pending';
CREATE INDEX trigger_fires_campaign ON trigger_fires (campaign_id, received_at_ms);
CREATE INDEX trigger_fires_job ON trigger_fires (job_id) WHERE job_id IS NOT NULL;

-- The last event that sent each person a triggered campaign, for `once_per`.
CREATE TABLE trigger_marks (
    campaign_id  TEXT NOT NULL,
    user_key     TEXT NOT NULL,
    event_key    TEXT NOT NULL,
    fired_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, user_key)
) WITHOUT ROWID;
