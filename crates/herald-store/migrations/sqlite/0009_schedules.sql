-- Campaigns that start later (`send_at`) or repeatedly (`cron`): `herald serve` starts each
-- occurrence when it is due. `next_at_ms` is the next occurrence; NULL once there is none
-- (sent, cancelled, or a cron that never comes again).
CREATE TABLE schedules (
    schedule_id    TEXT NOT NULL PRIMARY KEY,
    campaign_id    TEXT NOT NULL,
    document       TEXT NOT NULL,
    format         TEXT NOT NULL CHECK (format IN ('toml', 'json')),
    segment        TEXT,
    strict         BOOLEAN NOT NULL DEFAULT FALSE,
    state          TEXT NOT NULL CHECK (state IN ('scheduled', 'done', 'cancelled')),
    next_at_ms     BIGINT,
    created_at_ms  BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at_ms) WHERE next_at_ms IS NOT NULL;

-- One row per occurrence started: the primary key makes the start exactly-once when several
-- `herald serve` processes see the same occurrence due.
CREATE TABLE schedule_runs (
    schedule_id    TEXT NOT NULL,
    occurrence_ms  BIGINT NOT NULL,
    run_id         TEXT,
    started_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (schedule_id, occurrence_ms)
);
