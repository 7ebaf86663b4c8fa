-- Metrics (Go): how many runs of each job ended in each terminal status, and when the last one
-- did. /metrics reads these rows at every scrape, so its counters (bastion_runs_total,
-- bastion_last_success_timestamp_seconds) cost one row per job and status whatever the size of
-- the runs table, survive a restart, and never go down when run history is pruned (a Prometheus
-- counter that drops reads as a reset). Deleting a job deletes its rows: its series end with it.
--
-- The triggers count a run once, when it first reaches a terminal status: an insert that is
-- already terminal (a rejected run, an uploaded offline run), or an update from queued/running.
-- A re-upload that rewrites an ingested run's outcome is not counted again.
--
-- A migration that rebuilds the runs table (CREATE new, copy, DROP, RENAME) drops these
-- triggers with it and must create them again; storage/metrics_test.go checks that they exist.
CREATE TABLE run_totals (
  job_id        TEXT    NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  status        TEXT    NOT NULL,
  runs          INTEGER NOT NULL,
  last_ended_at INTEGER,
  PRIMARY KEY (job_id, status)
) WITHOUT ROWID;

INSERT INTO run_totals(job_id, status, runs, last_ended_at)
  SELECT job_id, status, COUNT(*), MAX(ended_at) FROM runs
  WHERE status IN ('success', 'failed', 'rejected', 'canceled')
  GROUP BY job_id, status;

CREATE TRIGGER run_totals_on_insert AFTER INSERT ON runs
WHEN NEW.status IN ('success', 'failed', 'rejected', 'canceled')
BEGIN
  INSERT OR IGNORE INTO run_totals(job_id, status, runs, last_ended_at) VALUES (NEW.job_id, NEW.status, 0, NULL);
  UPDATE run_totals SET runs = runs + 1,
    last_ended_at = CASE WHEN last_ended_at IS NULL OR NEW.ended_at > last_ended_at THEN NEW.ended_at ELSE last_ended_at END
    WHERE job_id = NEW.job_id AND status = NEW.status;
END;

CREATE TRIGGER run_totals_on_end AFTER UPDATE OF status ON runs
WHEN NEW.status IN ('success', 'failed', 'rejected', 'canceled')
  AND OLD.status NOT IN ('success', 'failed', 'rejected', 'canceled')
BEGIN
  INSERT OR IGNORE INTO run_totals(job_id, status, runs, last_ended_at) VALUES (NEW.job_id, NEW.status, 0, NULL);
  UPDATE run_totals SET runs = runs + 1,
    last_ended_at = CASE WHEN last_ended_at IS NULL OR NEW.ended_at > last_ended_at THEN NEW.ended_at ELSE last_ended_at END
    WHERE job_id = NEW.job_id AND status = NEW.status;
END;
