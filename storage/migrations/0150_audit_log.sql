-- The audit log: one row per mutating API request, login, logout, setup and agent enrollment
-- (GET /api/audit). No foreign keys: a row outlives the user, token or agent it names, and keeps
-- the username and token name as they were. Pruned after --audit-retention-days by the hourly
-- maintenance pass (audit_log_at).
--
-- actor_kind: user, token, agent or anonymous. action is "METHOD route-pattern". outcome is ok,
-- denied or error, derived from status. Never a request body, a password or a secret value.
CREATE TABLE audit_log (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  at             INTEGER NOT NULL,
  actor_kind     TEXT    NOT NULL,
  user_id        INTEGER,
  username       TEXT,
  token_id       INTEGER,
  token_name     TEXT,
  client_ip      TEXT    NOT NULL,
  action         TEXT    NOT NULL,
  object_kind    TEXT,
  object_id      TEXT,
  request_id     TEXT    NOT NULL,
  status         INTEGER NOT NULL,
  outcome        TEXT    NOT NULL
);
-- Every list page walks one of these newest first by (at, id), whatever the filter; the first
-- also serves pruning and time ranges.
CREATE INDEX audit_log_at ON audit_log(at, id);
CREATE INDEX audit_log_user ON audit_log(user_id, at, id);
CREATE INDEX audit_log_username ON audit_log(username, at, id);
CREATE INDEX audit_log_action ON audit_log(action, at, id);
