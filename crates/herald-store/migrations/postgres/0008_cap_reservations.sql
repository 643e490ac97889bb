-- Jobs of frequency-capped campaigns, recorded when the producer plans them: a capped campaign
-- counts a user's sent messages and the reservations of other runs in its period, so two
-- capped campaigns on one page (which plan one after the other) cannot both reach a user past
-- the cap. A reservation whose job ended other than `sent` does not count.
CREATE TABLE cap_reservations (
    job_id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    run_id         TEXT NOT NULL,
    page_id        TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    reserved_at_ms BIGINT NOT NULL
);
CREATE INDEX cap_reservations_page ON cap_reservations (page_id, reserved_at_ms);
