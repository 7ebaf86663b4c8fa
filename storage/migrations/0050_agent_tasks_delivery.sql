-- Agents (Go): exactly-once task delivery.
-- kind says which wire message the row becomes (backup | restore); payload_json holds the task
-- WITHOUT credentials, which are resolved each time the message is built.
-- cancel_requested_at is the cancel intent that survives reconnects: every re-send of an open
-- task is followed by a cancel while it is set.
ALTER TABLE agent_tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'backup';
ALTER TABLE agent_tasks ADD COLUMN cancel_requested_at INTEGER;

-- The ACK-timeout loop: open tasks not yet acknowledged, by when they were last sent.
CREATE INDEX agent_tasks_unacked ON agent_tasks(last_sent_at) WHERE completed_at IS NULL AND acked_at IS NULL;
