-- Bastion schema, version 1. Table and column names follow the original (Syt100/bastion) so that
-- its clients and data map onto ours. Timestamps are unix seconds (UTC); ids are UUID strings
-- unless noted.

CREATE TABLE users (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  username      TEXT    NOT NULL UNIQUE,
  password_hash TEXT    NOT NULL,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
  id          TEXT    PRIMARY KEY,
  user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  csrf_token  TEXT    NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions(expires_at);
CREATE INDEX sessions_user_id ON sessions(user_id);

CREATE TABLE login_throttle (
  ip              TEXT    PRIMARY KEY,
  failures        INTEGER NOT NULL,
  first_failed_at INTEGER NOT NULL,
  last_failed_at  INTEGER NOT NULL,
  locked_until    INTEGER
);
CREATE INDEX login_throttle_last_failed_at ON login_throttle(last_failed_at);

CREATE TABLE settings (
  key        TEXT    PRIMARY KEY,
  value_json TEXT    NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE secrets (
  id         TEXT    PRIMARY KEY,
  node_id    TEXT    NOT NULL DEFAULT 'hub',
  kind       TEXT    NOT NULL,
  name       TEXT    NOT NULL,
  kid        INTEGER NOT NULL,
  nonce      BLOB    NOT NULL,
  ciphertext BLOB    NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (kind, node_id, name)
);
CREATE INDEX secrets_node_kind ON secrets(node_id, kind, name);

CREATE TABLE agents (
  id                           TEXT    PRIMARY KEY,
  name                         TEXT,
  key_hash                     BLOB    NOT NULL UNIQUE,
  revoked_at                   INTEGER,
  last_seen_at                 INTEGER,
  capabilities_json            TEXT,
  desired_config_snapshot_id   TEXT,
  desired_config_snapshot_at   INTEGER,
  applied_config_snapshot_id   TEXT,
  applied_config_snapshot_at   INTEGER,
  last_config_sync_attempt_at  INTEGER,
  last_config_sync_error_kind  TEXT,
  last_config_sync_error       TEXT,
  last_config_sync_error_at    INTEGER,
  created_at                   INTEGER NOT NULL,
  updated_at                   INTEGER NOT NULL
);
CREATE INDEX agents_last_seen_at ON agents(last_seen_at);

CREATE TABLE agent_labels (
  agent_id   TEXT    NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  label      TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (agent_id, label)
) WITHOUT ROWID;
CREATE INDEX agent_labels_label ON agent_labels(label, agent_id);

CREATE TABLE enrollment_tokens (
  token_hash     BLOB    PRIMARY KEY,
  created_at     INTEGER NOT NULL,
  expires_at     INTEGER NOT NULL,
  remaining_uses INTEGER
);
CREATE INDEX enrollment_tokens_expires_at ON enrollment_tokens(expires_at);

-- A task sent to an agent. id is the run id for backups and the operation id for restores.
-- The row is written before the message is sent and stays open (completed_at NULL) until the
-- agent's result is applied; last_sent_at drives re-sends after an ACK timeout.
CREATE TABLE agent_tasks (
  id           TEXT    PRIMARY KEY,
  agent_id     TEXT    NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  run_id       TEXT    NOT NULL,
  status       TEXT    NOT NULL,
  payload_json TEXT    NOT NULL,
  send_count   INTEGER NOT NULL DEFAULT 0,
  last_sent_at INTEGER,
  acked_at     INTEGER,
  completed_at INTEGER,
  result_json  TEXT,
  error        TEXT,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
);
CREATE INDEX agent_tasks_open ON agent_tasks(agent_id, completed_at, created_at);
CREATE INDEX agent_tasks_run_id ON agent_tasks(run_id);

CREATE TABLE jobs (
  id                TEXT    PRIMARY KEY,
  name              TEXT    NOT NULL,
  agent_id          TEXT,
  schedule          TEXT,
  schedule_timezone TEXT    NOT NULL DEFAULT 'UTC',
  overlap_policy    TEXT    NOT NULL DEFAULT 'queue',
  -- Go: what to do with triggers missed while the Hub was down: run_once | skip.
  missed_run_policy TEXT    NOT NULL DEFAULT 'run_once',
  -- Go: the last trigger instant the scheduler acted on, so a restart neither loses nor doubles one.
  last_scheduled_at INTEGER,
  spec_json         TEXT    NOT NULL,
  created_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL,
  archived_at       INTEGER
);
CREATE INDEX jobs_agent_id ON jobs(agent_id);
CREATE INDEX jobs_updated_at ON jobs(updated_at, id);

CREATE TABLE runs (
  id                          TEXT    PRIMARY KEY,
  job_id                      TEXT    NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  status                      TEXT    NOT NULL,
  started_at                  INTEGER NOT NULL,
  ended_at                    INTEGER,
  summary_json                TEXT,
  error                       TEXT,
  target_snapshot_json        TEXT,
  progress_json               TEXT,
  cancel_requested_at         INTEGER,
  cancel_requested_by_user_id INTEGER,
  cancel_reason               TEXT
);
CREATE INDEX runs_job_id_started_at ON runs(job_id, started_at);
CREATE INDEX runs_status_started_at ON runs(status, started_at);
CREATE INDEX runs_ended_at ON runs(ended_at);

CREATE TABLE run_events (
  run_id      TEXT    NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,
  ts          INTEGER NOT NULL,
  level       TEXT    NOT NULL,
  kind        TEXT    NOT NULL,
  message     TEXT    NOT NULL,
  fields_json TEXT,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE operations (
  id                          TEXT    PRIMARY KEY,
  kind                        TEXT    NOT NULL,
  status                      TEXT    NOT NULL,
  node_id                     TEXT    NOT NULL DEFAULT 'hub',
  started_at                  INTEGER NOT NULL,
  ended_at                    INTEGER,
  summary_json                TEXT,
  error                       TEXT,
  subject_kind                TEXT,
  subject_id                  TEXT,
  progress_json               TEXT,
  cancel_requested_at         INTEGER,
  cancel_requested_by_user_id INTEGER,
  cancel_reason               TEXT,
  created_at                  INTEGER NOT NULL,
  updated_at                  INTEGER NOT NULL
);
CREATE INDEX operations_subject ON operations(subject_kind, subject_id, started_at);
CREATE INDEX operations_status ON operations(status, started_at);

CREATE TABLE operation_events (
  op_id       TEXT    NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,
  ts          INTEGER NOT NULL,
  level       TEXT    NOT NULL,
  kind        TEXT    NOT NULL,
  message     TEXT    NOT NULL,
  fields_json TEXT,
  PRIMARY KEY (op_id, seq)
) WITHOUT ROWID;

CREATE TABLE notifications (
  id              TEXT    PRIMARY KEY,
  run_id          TEXT    NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  channel         TEXT    NOT NULL,
  secret_name     TEXT    NOT NULL,
  status          TEXT    NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  -- Go: a claimed row carries a lease; a row left 'sending' past its lease was abandoned by a crash.
  lease_until     INTEGER,
  last_error      TEXT,
  last_error_kind TEXT,
  sent_at         INTEGER,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  UNIQUE (run_id, channel, secret_name)
);
CREATE INDEX notifications_status_next_attempt_at ON notifications(status, next_attempt_at);
CREATE INDEX notifications_created_at_id ON notifications(created_at DESC, id DESC);
CREATE INDEX notifications_status_channel_created_at_id ON notifications(status, channel, created_at DESC, id DESC);
CREATE INDEX notifications_channel_secret ON notifications(channel, secret_name, status);

CREATE TABLE notification_destinations (
  node_id     TEXT    NOT NULL,
  secret_kind TEXT    NOT NULL,
  secret_name TEXT    NOT NULL,
  enabled     INTEGER NOT NULL,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (node_id, secret_kind, secret_name),
  FOREIGN KEY (secret_kind, node_id, secret_name) REFERENCES secrets(kind, node_id, name) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE run_artifacts (
  run_id               TEXT    PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
  job_id               TEXT    NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  node_id              TEXT    NOT NULL,
  target_type          TEXT    NOT NULL,
  target_snapshot_json TEXT    NOT NULL,
  artifact_format      TEXT    NOT NULL,
  status               TEXT    NOT NULL,
  started_at           INTEGER NOT NULL,
  ended_at             INTEGER NOT NULL,
  source_files         INTEGER,
  source_dirs          INTEGER,
  source_bytes         INTEGER,
  transfer_bytes       INTEGER,
  last_error_kind      TEXT,
  last_error           TEXT,
  last_attempt_at      INTEGER,
  pinned_at            INTEGER,
  pinned_by_user_id    INTEGER,
  created_at           INTEGER NOT NULL,
  updated_at           INTEGER NOT NULL
);
CREATE INDEX run_artifacts_job_ended ON run_artifacts(job_id, ended_at DESC, run_id DESC);
CREATE INDEX run_artifacts_job_status_ended ON run_artifacts(job_id, status, ended_at DESC, run_id DESC);

-- Snapshot deletion queue. Not tied to jobs by a foreign key: deleting a job never deletes stored
-- backup data, and a delete already requested keeps going.
CREATE TABLE artifact_delete_tasks (
  run_id               TEXT    PRIMARY KEY,
  job_id               TEXT    NOT NULL,
  node_id              TEXT    NOT NULL,
  target_type          TEXT    NOT NULL,
  target_snapshot_json TEXT    NOT NULL,
  -- manual | retention | archive: retention's per-day cap counts only its own enqueues.
  reason               TEXT    NOT NULL DEFAULT 'manual',
  status               TEXT    NOT NULL,
  attempts             INTEGER NOT NULL DEFAULT 0,
  last_attempt_at      INTEGER,
  next_attempt_at      INTEGER NOT NULL,
  last_error_kind      TEXT,
  last_error           TEXT,
  ignored_at           INTEGER,
  ignored_by_user_id   INTEGER,
  ignore_reason        TEXT,
  created_at           INTEGER NOT NULL,
  updated_at           INTEGER NOT NULL
);
CREATE INDEX artifact_delete_tasks_status_next ON artifact_delete_tasks(status, next_attempt_at);
CREATE INDEX artifact_delete_tasks_reason_created ON artifact_delete_tasks(job_id, reason, created_at);

CREATE TABLE artifact_delete_events (
  run_id      TEXT    NOT NULL,
  seq         INTEGER NOT NULL,
  ts          INTEGER NOT NULL,
  level       TEXT    NOT NULL,
  kind        TEXT    NOT NULL,
  message     TEXT    NOT NULL,
  fields_json TEXT,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE incomplete_cleanup_tasks (
  run_id               TEXT    PRIMARY KEY,
  job_id               TEXT    NOT NULL,
  node_id              TEXT    NOT NULL,
  target_type          TEXT    NOT NULL,
  target_snapshot_json TEXT    NOT NULL,
  status               TEXT    NOT NULL,
  attempts             INTEGER NOT NULL DEFAULT 0,
  last_attempt_at      INTEGER,
  next_attempt_at      INTEGER NOT NULL,
  last_error_kind      TEXT,
  last_error           TEXT,
  ignored_at           INTEGER,
  ignored_by_user_id   INTEGER,
  ignore_reason        TEXT,
  created_at           INTEGER NOT NULL,
  updated_at           INTEGER NOT NULL
);
CREATE INDEX incomplete_cleanup_tasks_status_next ON incomplete_cleanup_tasks(status, next_attempt_at);

CREATE TABLE incomplete_cleanup_events (
  run_id      TEXT    NOT NULL,
  seq         INTEGER NOT NULL,
  ts          INTEGER NOT NULL,
  level       TEXT    NOT NULL,
  kind        TEXT    NOT NULL,
  message     TEXT    NOT NULL,
  fields_json TEXT,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
