-- Scheduled verification (restore drills) of a job's latest snapshot. One row per job that has a
-- drill schedule or a drill result; kept apart from jobs so that the job columns every query
-- scans stay as they are.
--   config_json        {"schedule","timezone","mode","sample_files"}; NULL: no scheduled drills
--   baseline_at        when the current drill schedule took effect (triggers before it never count
--                      as missed), as jobs.schedule_baseline_at
--   last_scheduled_at  the last drill trigger the drill scheduler acted on
--   pending_at         a drill is due and waits for its job's backup or its target's slot; NULL: none
--   pending_source     schedule | catch_up | manual
--   running_op_id      the drill operation in flight, NULL: none
--   last_verified_at   when the job's last drill (or verify of its latest snapshot) ended
--   last_verify_status success | failed | canceled
--   last_verify_op_id  that operation
--   last_proven_at     when a drill last succeeded
CREATE TABLE job_verification (
  job_id             TEXT    PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
  config_json        TEXT,
  baseline_at        INTEGER NOT NULL,
  last_scheduled_at  INTEGER,
  pending_at         INTEGER,
  pending_source     TEXT,
  running_op_id      TEXT,
  last_verified_at   INTEGER,
  last_verify_status TEXT,
  last_verify_op_id  TEXT,
  last_proven_at     INTEGER,
  updated_at         INTEGER NOT NULL
);
CREATE INDEX job_verification_pending ON job_verification(pending_at) WHERE pending_at IS NOT NULL;
