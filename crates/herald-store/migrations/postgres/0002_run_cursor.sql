-- Where a store-sourced run stands in the audience stream (`user:<external_id>` or
-- `anon:<psid>`), so `--resume` continues after a key rather than a count.
ALTER TABLE campaign_runs ADD COLUMN confirmed_cursor TEXT COLLATE "C";
