package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// TestHubRunsAJobAndRecoversInterruptedRuns: a job created through the API runs on the Hub
// through the real backup executor, its snapshot is indexed, and a run that a crash left
// "running" is marked failed at the next start.
func TestHubRunsAJobAndRecoversInterruptedRuns(t *testing.T) {
	t.Parallel()
	data, src, dst := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello, backups"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, stop, _ := startHub(t, "--data-dir", data)
	c := (&apitest.Hub{URL: base}).Login(t)
	jobID := createJob(t, c, "docs", map[string]any{"v": 1, "type": "filesystem",
		"source": map[string]any{"paths": []string{src}}, "target": map[string]any{"type": "local_dir", "base_dir": dst}})
	runID := runNow(t, c, jobID)
	if detail := waitRunEnd(t, c, runID); detail["status"] != "success" {
		resp := c.Do(t, "GET", "/api/runs/"+runID+"/events", nil)
		t.Fatalf("run ended %v: %s", detail["status"], resp.Body)
	}
	if _, err := os.Stat(filepath.Join(dst, jobID, runID, "complete.json")); err != nil {
		t.Fatalf("no complete snapshot on the target: %v", err)
	}
	if st, snap := c.Get(t, "/api/jobs/"+jobID+"/snapshots/"+runID); st != http.StatusOK || snap["status"] != "present" {
		t.Fatalf("snapshot index: %d %v", st, snap)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A crash mid-run: the row says running, no process is working on it.
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(data, "bastion.db"), storage.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().Exec(ctx, `INSERT INTO runs(id, job_id, status, started_at) VALUES ('crashed-run', ?, 'running', 1)`, jobID); err != nil {
		t.Fatal(err)
	}
	db.Close()
	base, stop, _ = startHub(t, "--data-dir", data)
	defer stop()
	c = (&apitest.Hub{URL: base}).Login(t)
	if st, d := c.Get(t, "/api/runs/crashed-run"); st != http.StatusOK || d["status"] != "failed" || d["error"] != "hub_restarted" {
		t.Fatalf("interrupted run after restart: %d %v", st, d)
	}
}
