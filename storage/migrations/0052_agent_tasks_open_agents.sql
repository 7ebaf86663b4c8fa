-- Agents (Go): the agent-timeout loop asks which agents still owe results (open tasks). Completed
-- tasks are never deleted, so a partial index keeps that question cheap as history grows.
CREATE INDEX agent_tasks_open_agent ON agent_tasks(agent_id) WHERE completed_at IS NULL;
