-- The instant from which a job's triggers count. It moves only when the schedule itself changes
-- (schedule or timezone edited, job unarchived), so that an unrelated edit made just as a trigger
-- falls due cannot make the scheduler skip that trigger.
ALTER TABLE jobs ADD COLUMN schedule_baseline_at INTEGER;
UPDATE jobs SET schedule_baseline_at = updated_at;
