package main

import (
	"archive/tar"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/testtool"
)

// TestCraftedSnapshotCannotReachOutsideTheDestination is security issue 11 item 1 end to end:
// someone who can write to a local_dir target replaces a run's snapshot with one whose tar
// holds a directory x/ and then a symlink x to a file outside the destination. A restore through
// the HTTP API (default overwrite policy) and a verify must leave that file's mode and mtime as
// they were and report the entries as refused, not succeed with 0 refused.
func TestCraftedSnapshotCannotReachOutsideTheDestination(t *testing.T) {
	t.Parallel()
	p := startHubProcess(t, t.TempDir())
	c := p.client(t)
	src, base := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "bk")
	testtool.WriteFile(t, filepath.Join(src, "a.txt"), []byte("a"), 0o644, time.Now())
	job := createJob(t, c, "crafted", map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{src}},
		"target": map[string]any{"type": "local_dir", "base_dir": base, "part_size_bytes": 1 << 20}})
	runID := runNow(t, c, job)
	if run := waitRunEnd(t, c, runID); run["status"] != "success" {
		t.Fatalf("run: %v", run)
	}

	outside := testtool.NewOutsideFile(t)
	testtool.WriteCraftedSnapshot(t, filepath.Join(base, job, runID), job, runID, []testtool.CraftedEntry{
		{Name: "safe.txt", Body: "safe"},
		{Name: "x/", Type: tar.TypeDir, Mode: 0o777},
		{Name: "x", Type: tar.TypeSymlink, Link: outside.Path},
		{Name: "y/", Type: tar.TypeDir, Mode: 0o777},
		{Name: "y", Type: tar.TypeSymlink, Link: outside.Dir},
		{Name: "y/pwned", Body: "pwned"},
	})

	dest := filepath.Join(t.TempDir(), "restored")
	st, body := c.Post(t, "/api/runs/"+runID+"/restore", map[string]any{
		"destination": map[string]any{"type": "local_fs", "node_id": "hub", "directory": dest}})
	if st != http.StatusOK {
		t.Fatalf("restore: %d %v", st, body)
	}
	op := waitOp(t, c, body["op_id"].(string))
	outside.Untouched(t)
	sum, _ := op["summary"].(map[string]any)
	if op["status"] != "failed" || !strings.Contains(fmt.Sprint(op["error"]), "unsafe_entries") || sum == nil {
		t.Fatalf("restore of a crafted snapshot: %v", op)
	}
	refused := map[string]string{}
	for _, r := range sum["refused_sample"].([]any) {
		r := r.(map[string]any)
		refused[r["path"].(string)] = r["reason"].(string)
	}
	if sum["refused"].(float64) < 3 || !strings.Contains(refused["x"], "symlink") || !strings.Contains(refused["y"], "symlink") ||
		!strings.Contains(refused["y/pwned"], "parent y is a symlink") {
		t.Fatalf("refusals: %v", sum)
	}

	_, body = c.Post(t, "/api/runs/"+runID+"/verify", nil)
	op = waitOp(t, c, body["op_id"].(string))
	outside.Untouched(t)
	if op["status"] != "failed" || !strings.Contains(fmt.Sprint(op["error"]), "unsafe_entries") {
		t.Fatalf("verify of a crafted snapshot: %v", op)
	}
}
