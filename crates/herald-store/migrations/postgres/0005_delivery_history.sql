-- The results a job's record in `deliveries` does not show: results it showed before a later
-- terminal result replaced it (a dead job replayed and then sent), and repeats that changed
-- nothing (a job sent twice). With the record they are the job's whole history.
CREATE TABLE delivery_history (
    job_id         TEXT COLLATE "C" NOT NULL,
    status         TEXT NOT NULL,
    message_id     TEXT,
    error_code     BIGINT,
    attempts       BIGINT NOT NULL,
    finished_at_ms BIGINT NOT NULL,
    superseded     BOOLEAN NOT NULL
);
CREATE INDEX delivery_history_job ON delivery_history (job_id);
