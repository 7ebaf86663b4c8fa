-- A notification reports an event kind: "run" (a run ended, as before) or "verify_failed" (a
-- restore drill failed; operation_id names it, run_id the snapshot it drilled). SQLite cannot
-- change a UNIQUE constraint in place, so the table is rebuilt with the key widened to the event.
CREATE TABLE notifications_v2 (
  id              TEXT    PRIMARY KEY,
  run_id          TEXT    NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  channel         TEXT    NOT NULL,
  secret_name     TEXT    NOT NULL,
  status          TEXT    NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  lease_until     INTEGER,
  last_error      TEXT,
  last_error_kind TEXT,
  sent_at         INTEGER,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  event_kind      TEXT    NOT NULL DEFAULT 'run',
  -- '' for run events, so that the key below stays comparable (NULLs are all distinct).
  operation_id    TEXT    NOT NULL DEFAULT '',
  UNIQUE (run_id, event_kind, operation_id, channel, secret_name)
);
INSERT INTO notifications_v2(id, run_id, channel, secret_name, status, attempts, next_attempt_at, lease_until,
  last_error, last_error_kind, sent_at, created_at, updated_at)
  SELECT id, run_id, channel, secret_name, status, attempts, next_attempt_at, lease_until,
  last_error, last_error_kind, sent_at, created_at, updated_at FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_v2 RENAME TO notifications;
CREATE INDEX notifications_status_next_attempt_at ON notifications(status, next_attempt_at);
CREATE INDEX notifications_created_at_id ON notifications(created_at DESC, id DESC);
CREATE INDEX notifications_status_channel_created_at_id ON notifications(status, channel, created_at DESC, id DESC);
CREATE INDEX notifications_channel_secret ON notifications(channel, secret_name, status);
