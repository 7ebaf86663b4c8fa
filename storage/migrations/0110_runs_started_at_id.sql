-- The Hub-wide runs list (GET /api/runs) pages newest first by (started_at, id); without this
-- index every page sorts the whole runs table.
CREATE INDEX runs_started_at_id ON runs(started_at, id);
