-- A triggered campaign's `delay` is waited out in the store, not the broker: a fire is
-- claimed once it is due, so the segment's filters, the profile and the campaign itself are
-- read when the message is sent (a cart bought during the hour is not reminded of). Keep in
-- step with sqlite/0012_fire_due.sql.

-- The campaign's delay, so a fire's due time is known when it is recorded. Campaigns indexed
-- before this migration say 0 until put again; their jobs then wait out the delay in the
-- broker as before.
ALTER TABLE campaign_triggers ADD COLUMN delay_ms BIGINT NOT NULL DEFAULT 0;

-- When the fire may be dispatched: received_at_ms plus the delay.
ALTER TABLE trigger_fires ADD COLUMN due_at_ms BIGINT;
UPDATE trigger_fires SET due_at_ms = received_at_ms;
DROP INDEX trigger_fires_pending;
CREATE INDEX trigger_fires_due ON trigger_fires (due_at_ms) WHERE state = 'pending';
