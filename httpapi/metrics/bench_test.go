//go:build unix

package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/storage/storagetest"
)

// BenchmarkScrape is the cost of one GET /metrics on a Hub with 200 jobs, 100,000 runs in their
// history (one notification each) and 20 present snapshots per job: the scrape reads run
// totals, not the runs, so it should stay flat as history grows, except for the notifications
// count, which walks that table's status index.
func BenchmarkScrape(b *testing.B) {
	db := storagetest.Open(b)
	ctx := context.Background()
	stmts := benchStmts
	for _, s := range stmts {
		if _, err := db.Writer().Exec(ctx, s); err != nil {
			b.Fatalf("%s: %v", s, err)
		}
	}
	h := newMetrics(b, db).Handler()
	b.ReportAllocs()
	// CPU time per scrape as well as wall time: on a shared host the wall time mostly measures
	// the other processes.
	cpu0 := cpuTime()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("scrape: %d %s", rec.Code, rec.Body)
		}
		io.Copy(io.Discard, rec.Body)
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// cpuTime is the CPU time (user + system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var benchStmts = []string{
	`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 199)
			INSERT INTO jobs(id, name, agent_id, schedule, spec_json, created_at, updated_at)
			SELECT 'job-' || i, 'job number ' || i, CASE WHEN i % 4 = 0 THEN 'agent-' || (i % 10) END, '0 3 * * *', '{}', 1, 1 FROM n`,
	`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9)
			INSERT INTO agents(id, key_hash, last_seen_at, created_at, updated_at) SELECT 'agent-' || i, randomblob(16), i * 100, 1, 1 FROM n`,
	`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999)
			INSERT INTO runs(id, job_id, status, started_at, ended_at)
			SELECT 'run-' || i, 'job-' || (i % 200), CASE WHEN i % 10 = 0 THEN 'failed' WHEN i % 97 = 0 THEN 'canceled' ELSE 'success' END,
				1000 + i * 60, 1000 + i * 60 + 30 FROM n`,
	`INSERT INTO notifications(id, run_id, channel, secret_name, status, next_attempt_at, created_at, updated_at)
			SELECT 'n-' || id, id, 'email', 'ops', CASE WHEN status = 'failed' THEN 'failed' ELSE 'sent' END, 1, 1, 1 FROM runs`,
	`INSERT INTO run_artifacts(run_id, job_id, node_id, target_type, target_snapshot_json, artifact_format, status,
			started_at, ended_at, source_bytes, transfer_bytes, created_at, updated_at)
			SELECT id, job_id, 'hub', 'local_dir', '{}', 'archive_v1', 'present', started_at, ended_at, 1000000, 500000, 1, 1
			FROM runs WHERE CAST(substr(id, 5) AS INTEGER) >= 96000 AND status = 'success'`,
}
