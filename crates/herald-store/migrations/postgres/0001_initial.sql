-- Herald store, version 1 (PostgreSQL). Keep in step with sqlite/0001_initial.sql: same tables,
-- columns, keys and indexes; only the types differ (BIGINT for INTEGER, JSONB attributes, and
-- COLLATE "C" on ids so that ordering and keyset pagination match SQLite's byte order).
-- Times are epoch milliseconds (`*_ms`).
-- Never edit an applied migration: sqlx checks its checksum. Add 0002_*.sql to both folders.

-- A user as the customer's systems know them. `messenger_id` is Braze's attribute (a PSID
-- whose page may be unknown); the per-page truth is in `identities`.
CREATE TABLE users (
    external_id        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    messenger_id       TEXT COLLATE "C",
    last_inbound_at_ms BIGINT,
    attributes         JSONB   NOT NULL DEFAULT '{}',
    created_at_ms      BIGINT  NOT NULL,
    updated_at_ms      BIGINT  NOT NULL
);
CREATE INDEX users_messenger_id ON users (messenger_id) WHERE messenger_id IS NOT NULL;

-- A PSID on a page. `external_id` stays NULL until a ref, user_ref or import links it (and
-- never goes back to NULL); until then the person is streamed under `anon_id`, a random id that
-- reveals nothing of the PSID, given to every identity created unlinked.
CREATE TABLE identities (
    page_id            TEXT COLLATE "C" NOT NULL,
    psid               TEXT COLLATE "C" NOT NULL,
    anon_id            TEXT COLLATE "C",
    external_id        TEXT COLLATE "C",
    first_seen_at_ms   BIGINT  NOT NULL,
    last_inbound_at_ms BIGINT,
    opted_out          BOOLEAN NOT NULL DEFAULT FALSE,
    opted_out_at_ms    BIGINT,
    opt_changed_at_ms  BIGINT,
    PRIMARY KEY (page_id, psid)
);
CREATE INDEX identities_external_id ON identities (page_id, external_id, last_inbound_at_ms);
CREATE INDEX identities_anon_id ON identities (page_id, anon_id) WHERE anon_id IS NOT NULL;

-- The highest delivery and read watermark seen per PSID, so that a receipt that arrives before
-- the result it confirms is applied when the result is recorded.
CREATE TABLE receipts (
    page_id                TEXT COLLATE "C" NOT NULL,
    psid                   TEXT COLLATE "C" NOT NULL,
    delivered_watermark_ms BIGINT,
    read_watermark_ms      BIGINT,
    PRIMARY KEY (page_id, psid)
);

-- A campaign run: the document it was started from, its state, and the producer's checkpoint.
CREATE TABLE campaign_runs (
    run_id                 TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    campaign_id            TEXT COLLATE "C" NOT NULL,
    document               TEXT    NOT NULL,
    status                 TEXT    NOT NULL
        CHECK (status IN ('running', 'paused', 'cancelled', 'complete')),
    started_at_ms          BIGINT  NOT NULL,
    updated_at_ms          BIGINT  NOT NULL,
    segment                TEXT    NOT NULL,
    confirmed_through_line BIGINT  NOT NULL DEFAULT 0,
    published              BIGINT  NOT NULL DEFAULT 0,
    skipped                TEXT    NOT NULL DEFAULT '{}',
    malformed              BIGINT  NOT NULL DEFAULT 0,
    complete               BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX campaign_runs_campaign ON campaign_runs (campaign_id, started_at_ms);

-- One terminal result per job (first write wins), plus what receipts later said about it.
CREATE TABLE deliveries (
    job_id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    run_id           TEXT COLLATE "C" NOT NULL,
    campaign_id      TEXT COLLATE "C" NOT NULL,
    external_id      TEXT COLLATE "C" NOT NULL,
    page_id          TEXT COLLATE "C" NOT NULL,
    psid             TEXT COLLATE "C",
    status           TEXT    NOT NULL
        CHECK (status IN ('sent', 'failed', 'dead', 'expired', 'skipped', 'cancelled')),
    message_id       TEXT COLLATE "C",
    error_code       BIGINT,
    error_subcode    BIGINT,
    error_class      TEXT,
    error_message    TEXT,
    error_fbtrace_id TEXT,
    attempts         BIGINT  NOT NULL,
    finished_at_ms   BIGINT  NOT NULL,
    sent_at_ms       BIGINT,
    delivered_at_ms  BIGINT,
    read_at_ms       BIGINT
);
CREATE INDEX deliveries_run ON deliveries (run_id, status);
CREATE INDEX deliveries_watermark ON deliveries (page_id, psid, sent_at_ms);
CREATE INDEX deliveries_message_id ON deliveries (message_id) WHERE message_id IS NOT NULL;

-- Webhook event keys already handled (dedupe of Meta's at-least-once deliveries).
CREATE TABLE seen_events (
    key        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    seen_at_ms BIGINT  NOT NULL
);
CREATE INDEX seen_events_seen_at ON seen_events (seen_at_ms);
