-- Bulk operations (hub.md §4): one row per operation, one item per target agent, each item with
-- its own status so that a failing agent fails alone and can be retried alone.
CREATE TABLE bulk_operations (
  id                 TEXT    PRIMARY KEY,
  kind               TEXT    NOT NULL,
  status             TEXT    NOT NULL, -- queued | running | done | canceled
  created_by_user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
  selector_json      TEXT    NOT NULL,
  payload_json       TEXT    NOT NULL,
  created_at         INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL,
  started_at         INTEGER,
  ended_at           INTEGER,
  canceled_at        INTEGER
);
CREATE INDEX bulk_operations_created ON bulk_operations(created_at); -- with the rowid: creation order

CREATE TABLE bulk_operation_items (
  op_id           TEXT    NOT NULL REFERENCES bulk_operations(id) ON DELETE CASCADE,
  agent_id        TEXT    NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  status          TEXT    NOT NULL, -- queued | running | success | failed | canceled
  attempts        INTEGER NOT NULL DEFAULT 0,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  started_at      INTEGER,
  ended_at        INTEGER,
  last_error_kind TEXT,
  last_error      TEXT,
  PRIMARY KEY (op_id, agent_id)
) WITHOUT ROWID;
-- The loop claims queued items and, at start, finds the running ones a crash left behind.
CREATE INDEX bulk_operation_items_status ON bulk_operation_items(status, updated_at);
CREATE INDEX bulk_operation_items_agent ON bulk_operation_items(agent_id);
