-- Campaign documents saved under their id (`herald campaigns put`, `PUT /campaigns/{id}`),
-- every version kept, so a run or a trigger names the version it used. A deleted campaign
-- keeps its versions; it only stops being listed and triggered.
CREATE TABLE stored_campaigns (
    campaign_id    TEXT NOT NULL,
    version        BIGINT NOT NULL,
    document       TEXT NOT NULL,
    format         TEXT NOT NULL CHECK (format IN ('toml', 'json')),
    created_at_ms  BIGINT NOT NULL,
    deleted        BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (campaign_id, version)
);
