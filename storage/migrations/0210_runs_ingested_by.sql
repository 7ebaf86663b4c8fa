-- Which agent uploaded an ingested run (POST /agent/runs/ingest); NULL for runs the Hub tracked
-- itself. A repeated upload must come from the same agent: a job moved to another agent must not
-- let that agent rewrite the runs the first one uploaded. Runs uploaded before this column existed
-- are attributed to the node of their snapshot, else to their job's agent now.
ALTER TABLE runs ADD COLUMN ingested_by TEXT;
UPDATE runs SET ingested_by = COALESCE(
    (SELECT a.node_id FROM run_artifacts a WHERE a.run_id = runs.id),
    (SELECT j.agent_id FROM jobs j WHERE j.id = runs.job_id))
  WHERE ingested_at IS NOT NULL;
