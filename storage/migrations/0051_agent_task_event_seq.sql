-- Agents (Go): the highest agent-assigned event sequence applied for a task. An agent re-sends
-- the events of an unfinished task after a reconnect (some may have died with the old
-- connection); the Hub applies only those above this mark, so each event is recorded once.
ALTER TABLE agent_tasks ADD COLUMN last_event_seq INTEGER NOT NULL DEFAULT 0;
