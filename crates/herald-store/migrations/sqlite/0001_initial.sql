-- Herald store, version 1 (SQLite). Keep in step with postgres/0001_initial.sql: same tables,
-- columns, keys and indexes; only the types differ. Times are epoch milliseconds (`*_ms`).
-- Tables keyed by short text without other large columns are WITHOUT ROWID (one B-tree less).
-- Never edit an applied migration: sqlx checks its checksum. Add 0002_*.sql to both folders.

-- A user as the customer's systems know them. `messenger_id` is Braze's attribute (a PSID
-- whose page may be unknown); the per-page truth is in `identities`.
CREATE TABLE users (
    external_id        TEXT    NOT NULL PRIMARY KEY,
    messenger_id       TEXT,
    last_inbound_at_ms INTEGER,
    attributes         TEXT    NOT NULL DEFAULT '{}',
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL
);
CREATE INDEX users_messenger_id ON users (messenger_id) WHERE messenger_id IS NOT NULL;

-- A PSID on a page. `external_id` stays NULL until a ref, user_ref or import links it (and
-- never goes back to NULL); until then the person is streamed under `anon_id`, a random id that
-- reveals nothing of the PSID, given to every identity created unlinked.
CREATE TABLE identities (
    page_id            TEXT    NOT NULL,
    psid               TEXT    NOT NULL,
    anon_id            TEXT,
    external_id        TEXT,
    first_seen_at_ms   INTEGER NOT NULL,
    last_inbound_at_ms INTEGER,
    opted_out          BOOLEAN NOT NULL DEFAULT FALSE,
    opted_out_at_ms    INTEGER,
    opt_changed_at_ms  INTEGER,
    PRIMARY KEY (page_id, psid)
) WITHOUT ROWID;
CREATE INDEX identities_external_id ON identities (page_id, external_id, last_inbound_at_ms);
CREATE INDEX identities_anon_id ON identities (page_id, anon_id) WHERE anon_id IS NOT NULL;

-- The highest delivery and read watermark seen per PSID, so that a receipt that arrives before
-- the result it confirms is applied when the result is recorded.
CREATE TABLE receipts (
    page_id                TEXT    NOT NULL,
    psid                   TEXT    NOT NULL,
    delivered_watermark_ms INTEGER,
    read_watermark_ms      INTEGER,
    PRIMARY KEY (page_id, psid)
) WITHOUT ROWID;

-- A campaign run: the document it was started from, its state, and the producer's checkpoint.
CREATE TABLE campaign_runs (
    run_id                 TEXT    NOT NULL PRIMARY KEY,
    campaign_id            TEXT    NOT NULL,
    document               TEXT    NOT NULL,
    status                 TEXT    NOT NULL
        CHECK (status IN ('running', 'paused', 'cancelled', 'complete')),
    started_at_ms          INTEGER NOT NULL,
    updated_at_ms          INTEGER NOT NULL,
    segment                TEXT    NOT NULL,
    confirmed_through_line INTEGER NOT NULL DEFAULT 0,
    published              INTEGER NOT NULL DEFAULT 0,
    skipped                TEXT    NOT NULL DEFAULT '{}',
    malformed              INTEGER NOT NULL DEFAULT 0,
    complete               BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX campaign_runs_campaign ON campaign_runs (campaign_id, started_at_ms);

-- One terminal result per job (first write wins), plus what receipts later said about it.
CREATE TABLE deliveries (
    job_id           TEXT    NOT NULL PRIMARY KEY,
    run_id           TEXT    NOT NULL,
    campaign_id      TEXT    NOT NULL,
    external_id      TEXT    NOT NULL,
    page_id          TEXT    NOT NULL,
    psid             TEXT,
    status           TEXT    NOT NULL
        CHECK (status IN ('sent', 'failed', 'dead', 'expired', 'skipped', 'cancelled')),
    message_id       TEXT,
    error_code       INTEGER,
    error_subcode    INTEGER,
    error_class      TEXT,
    error_message    TEXT,
    error_fbtrace_id TEXT,
    attempts         INTEGER NOT NULL,
    finished_at_ms   INTEGER NOT NULL,
    sent_at_ms       INTEGER,
    delivered_at_ms  INTEGER,
    read_at_ms       INTEGER
);
CREATE INDEX deliveries_run ON deliveries (run_id, status);
CREATE INDEX deliveries_watermark ON deliveries (page_id, psid, sent_at_ms);
CREATE INDEX deliveries_message_id ON deliveries (message_id) WHERE message_id IS NOT NULL;

-- Webhook event keys already handled (dedupe of Meta's at-least-once deliveries).
CREATE TABLE seen_events (
    key        TEXT    NOT NULL PRIMARY KEY,
    seen_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX seen_events_seen_at ON seen_events (seen_at_ms);
