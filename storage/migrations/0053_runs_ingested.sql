-- Agents (Go): when an agent uploaded the run after running it offline (POST /agent/runs/ingest);
-- NULL for every run the Hub tracked itself. A repeated upload may update only an ingested row:
-- an agent must never rewrite a run the Hub queued, dispatched, canceled or ran.
ALTER TABLE runs ADD COLUMN ingested_at INTEGER;
