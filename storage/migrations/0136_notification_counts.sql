-- Metrics (Go): how many notifications are in each status, kept by triggers so that /metrics
-- reads a handful of rows instead of counting the notifications table (one row per run and
-- destination, kept as long as run history: a count by status walks all of it, ~13 ms per
-- 100,000 rows, at every scrape). The rows always equal
-- SELECT status, COUNT(*) FROM notifications GROUP BY status; deletes (a pruned run's rows go
-- by cascade, which fires the delete trigger too) lower them. storage/metrics_test.go checks
-- that invariant and that the triggers exist: a migration that rebuilds the notifications table
-- drops them and must create them again.
CREATE TABLE notification_counts (
  status TEXT    PRIMARY KEY,
  n      INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO notification_counts(status, n) SELECT status, COUNT(*) FROM notifications GROUP BY status;

CREATE TRIGGER notification_counts_on_insert AFTER INSERT ON notifications
BEGIN
  INSERT OR IGNORE INTO notification_counts(status, n) VALUES (NEW.status, 0);
  UPDATE notification_counts SET n = n + 1 WHERE status = NEW.status;
END;

CREATE TRIGGER notification_counts_on_update AFTER UPDATE OF status ON notifications
WHEN NEW.status IS NOT OLD.status
BEGIN
  UPDATE notification_counts SET n = n - 1 WHERE status = OLD.status;
  INSERT OR IGNORE INTO notification_counts(status, n) VALUES (NEW.status, 0);
  UPDATE notification_counts SET n = n + 1 WHERE status = NEW.status;
END;

CREATE TRIGGER notification_counts_on_delete AFTER DELETE ON notifications
BEGIN
  UPDATE notification_counts SET n = n - 1 WHERE status = OLD.status;
END;

-- The snapshot bytes of each job, summed at every scrape over its present snapshots: covering,
-- so the sum reads the index alone, never the rows with their snapshot JSON.
CREATE INDEX run_artifacts_job_status_bytes ON run_artifacts(job_id, status, transfer_bytes, source_bytes);
