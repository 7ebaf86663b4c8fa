package operations_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
)

// TestIndexCachePruneUnused: an agent's cache drops the indexes nobody fetched since the cutoff
// and keeps those fetched again (a fetch of an unchanged index refreshes it without copying).
func TestIndexCachePruneUnused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := t.TempDir()
	tgt, err := localdir.New(base)
	if err != nil {
		t.Fatal(err)
	}
	used, stale := targets.RunRef{JobID: "job", RunID: uuid(1)}, targets.RunRef{JobID: "job", RunID: uuid(2)}
	for _, run := range []targets.RunRef{used, stale} {
		dir := filepath.Join(base, run.JobID, run.RunID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, targets.EntriesName), []byte("index of "+run.RunID), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cache := operations.NewIndexCache(filepath.Join(t.TempDir(), "cache", "entries"))
	long := time.Now().Add(-30 * 24 * time.Hour)
	for _, run := range []targets.RunRef{used, stale} {
		p, err := cache.Fetch(ctx, tgt, run)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, long, long); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cache.Fetch(ctx, tgt, used); err != nil {
		t.Fatal(err)
	}
	if err := cache.PruneUnused(time.Now().Add(-7 * 24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(cache.Dir(), used.RunID, targets.EntriesName)); err != nil || string(b) != "index of "+used.RunID {
		t.Fatalf("the index in use was dropped: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(cache.Dir(), stale.RunID)); !os.IsNotExist(err) {
		t.Fatalf("the unused index was kept: %v", err)
	}
	if err := cache.Drop("../escape"); err == nil {
		t.Fatal("Drop accepted a run id that leaves the cache")
	}
}
