-- The send ledger's proof: Meta echoes every message a page sends (message_echoes), with the
-- metadata Herald set, the job id. One row per job, from its first echo.
CREATE TABLE echoes (
    job_id       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    page_id      TEXT COLLATE "C" NOT NULL,
    message_id   TEXT,
    echoed_at_ms BIGINT NOT NULL
);
