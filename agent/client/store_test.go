package client

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/agent/protocol"
)

type storeClock struct{ now time.Time }

func (c *storeClock) Now() time.Time { return c.now }

func openStore(t *testing.T, dir string, clk *storeClock) (*taskStore, []string) {
	t.Helper()
	s, interrupted, err := openTaskStore(dir, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return s, interrupted
}

// TestTaskStoreSurvivesRestart: what the store records is on disk (written before the ACK), so a
// restarted agent knows every task it accepted and its result, and reports a task that was
// running when it died as interrupted instead of running it again.
func TestTaskStoreSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := &storeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, _ := openStore(t, dir, clk)
	if err := s.accept("done-1", "run-1", kindBackup); err != nil {
		t.Fatal(err)
	}
	if err := s.finish("done-1", protocol.TaskResult{TaskID: "done-1", RunID: "run-1", Status: protocol.StatusSuccess}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"running-2", "restore-3"} {
		kind := kindBackup
		if id == "restore-3" {
			kind = kindRestore
		}
		if err := s.accept(id, "run-"+id, kind); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.accept("done-1", "run-1", kindBackup); err != errKnownTask {
		t.Fatalf("accepting a known task again: %v", err)
	}

	// The agent dies here; a new process opens the same directory.
	s2, interrupted := openStore(t, dir, clk)
	if len(interrupted) != 2 {
		t.Fatalf("interrupted %v, want running-2 and restore-3", interrupted)
	}
	if r, ok := s2.get("done-1"); !ok || r.Result == nil || r.Result.Status != protocol.StatusSuccess {
		t.Fatalf("finished task after a restart: %+v %v", r, ok)
	}
	r, ok := s2.get("running-2")
	if !ok || r.Result == nil || r.Result.Status != protocol.StatusFailed || !strings.Contains(string(r.Result.Summary), InterruptedCode) {
		t.Fatalf("task running at the crash: %+v %v", r, ok)
	}
	if r, ok := s2.get("restore-3"); !ok || r.OpResult == nil || r.OpResult.Status != protocol.StatusFailed {
		t.Fatalf("restore running at the crash: %+v %v", r, ok)
	}
	if err := s2.accept("running-2", "run-running-2", kindBackup); err != errKnownTask {
		t.Fatalf("an interrupted task was accepted again: %v", err)
	}
	// Its interrupted result is on disk too: a third start reports nothing new.
	if _, again := openStore(t, dir, clk); len(again) != 0 {
		t.Fatalf("interrupted again at the next start: %v", again)
	}
}

// TestTaskStoreRefusesUnsafeIDs: a task id becomes a file name, so only [A-Za-z0-9_-]{1,128} is
// recorded (and so acknowledged).
func TestTaskStoreRefusesUnsafeIDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openStore(t, filepath.Join(dir, "tasks"), &storeClock{now: time.Unix(1, 0)})
	for _, id := range []string{"", "../escape", "a/b", "dot.json", strings.Repeat("x", 129), "nul\x00"} {
		if err := s.accept(id, "r", kindBackup); err == nil {
			t.Errorf("task id %q was accepted", id)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("files outside the store: %v", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tasks")); len(entries) != 0 {
		t.Fatalf("records of refused ids: %v", entries)
	}
}

// TestTaskStoreKeepsResultsUntilAcked: a result is re-sent (unackedResults) until the Hub
// acknowledges it, across restarts; an acknowledged record is kept for recordRetention, so a late
// re-delivery is still recognised, and then removed.
func TestTaskStoreKeepsResultsUntilAcked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := &storeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, _ := openStore(t, dir, clk)
	for i, id := range []string{"b-older", "a-newer"} {
		clk.now = clk.now.Add(time.Duration(i) * time.Second)
		if err := s.accept(id, id, kindBackup); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.unackedResults()) != 0 {
		t.Fatal("a task without a result has something to re-send")
	}
	for _, id := range []string{"a-newer", "b-older"} {
		if err := s.finish(id, protocol.TaskResult{TaskID: id, RunID: id, Status: protocol.StatusSuccess}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(ms []protocol.Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.(*protocol.TaskResult).TaskID)
		}
		return out
	}
	if got := ids(s.unackedResults()); strings.Join(got, ",") != "b-older,a-newer" {
		t.Fatalf("results to re-send %v, want oldest task first", got)
	}
	s, _ = openStore(t, dir, clk) // a restart before the acknowledgement
	if got := ids(s.unackedResults()); len(got) != 2 {
		t.Fatalf("results to re-send after a restart: %v", got)
	}
	if err := s.ackResult("b-older"); err != nil {
		t.Fatal(err)
	}
	s, _ = openStore(t, dir, clk)
	if got := ids(s.unackedResults()); strings.Join(got, ",") != "a-newer" {
		t.Fatalf("results to re-send after an ack and a restart: %v", got)
	}
	if r, ok := s.get("b-older"); !ok || !r.ResultAcked {
		t.Fatalf("acknowledged record: %+v %v", r, ok)
	}
	b, err := os.ReadFile(filepath.Join(dir, "b-older.json"))
	var onDisk taskRecord
	if err != nil || json.Unmarshal(b, &onDisk) != nil || !onDisk.ResultAcked {
		t.Fatalf("acknowledgement on disk: %s %v", b, err)
	}

	clk.now = clk.now.Add(recordRetention + time.Hour)
	s, _ = openStore(t, dir, clk)
	if _, ok := s.get("b-older"); ok {
		t.Fatal("an acknowledged record outlived its retention")
	}
	if _, ok := s.get("a-newer"); !ok {
		t.Fatal("an unacknowledged result was dropped")
	}
}
