-- Why a run's producer stopped before the end (an API-started run whose producer failed, or
-- whose herald serve stopped), so `campaign status` says so and how to continue instead of
-- showing a run that looks busy. Cleared by the next progress a producer saves (a resume).
-- Keep in step with sqlite/0013_producer_stopped.sql.
ALTER TABLE campaign_runs ADD COLUMN producer_stopped TEXT;
