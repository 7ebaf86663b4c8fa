package operations_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
)

// countingTarget counts the downloads of entries.jsonl.zst, and can hold them until released.
type countingTarget struct {
	targets.Target
	opens atomic.Int32
	hold  chan struct{} // nil: no hold
}

func (c *countingTarget) Open(ctx context.Context, run targets.RunRef, name string) (io.ReadCloser, error) {
	if name == targets.EntriesName {
		c.opens.Add(1)
		if c.hold != nil {
			<-c.hold
		}
	}
	return c.Target.Open(ctx, run, name)
}

type cacheBundle struct {
	base string
	tgt  *countingTarget
}

func setupCache(t *testing.T) *cacheBundle {
	t.Helper()
	base := t.TempDir()
	tgt, err := localdir.New(base)
	if err != nil {
		t.Fatal(err)
	}
	return &cacheBundle{base: base, tgt: &countingTarget{Target: tgt}}
}

// publish writes a snapshot's entries.jsonl.zst with files files in a few folders, and returns
// its path on the target.
func (b *cacheBundle) publish(t *testing.T, run targets.RunRef, files int) string {
	t.Helper()
	dir := filepath.Join(b.base, run.JobID, run.RunID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for i := range files {
		e := format.FileEntry(fmt.Sprintf("srv/d%d/file-%05d.txt", i%7, i), int64(i), fmt.Sprintf("%064x", i))
		if err := e.AppendLine(&buf); err != nil {
			t.Fatal(err)
		}
	}
	zw, _ := zstd.NewWriter(nil)
	p := filepath.Join(dir, targets.EntriesName)
	if err := os.WriteFile(p, zw.EncodeAll(buf.Bytes(), nil), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (b *cacheBundle) list(t *testing.T, c *operations.IndexCache, run targets.RunRef, opts restore.ListOptions) restore.Page {
	t.Helper()
	page, err := c.List(context.Background(), b.tgt, run, opts)
	if err != nil {
		t.Fatal(err)
	}
	want, err := restore.List(filepath.Join(b.base, run.JobID, run.RunID, targets.EntriesName), opts)
	if err != nil || !reflect.DeepEqual(page, want) {
		t.Fatalf("cache %+v\nstreaming %+v %v", page, want, err)
	}
	return page
}

// TestIndexCacheBuildsOnceAndRebuilds: the first page builds the index (one download, which is
// then removed), later pages and a new cache on the same directory (a restart) use it; a
// missing, stale, corrupt or damaged index, or a half build left by a crash, is rebuilt, never
// used.
func TestIndexCacheBuildsOnceAndRebuilds(t *testing.T) {
	t.Parallel()
	b := setupCache(t)
	run := targets.RunRef{JobID: "job", RunID: uuid(1)}
	src := b.publish(t, run, 50)
	dir := filepath.Join(t.TempDir(), "cache", "entries")
	cache := operations.NewIndexCache(dir, 0)
	opts := restore.ListOptions{Prefix: "srv/d3", Limit: 3}
	b.list(t, cache, run, opts)
	b.list(t, cache, run, restore.ListOptions{Prefix: "srv", Cursor: "2"})
	b.list(t, operations.NewIndexCache(dir, 0), run, opts)
	if n := b.tgt.opens.Load(); n != 1 {
		t.Fatalf("%d downloads, want 1", n)
	}
	idx := filepath.Join(dir, run.RunID, operations.IndexName)
	if _, err := os.Stat(filepath.Join(dir, run.RunID, targets.EntriesName)); !os.IsNotExist(err) {
		t.Fatalf("the download was kept: %v", err)
	}
	good, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := func(name string, damage func()) {
		t.Helper()
		before := b.tgt.opens.Load()
		damage()
		b.list(t, cache, run, opts)
		if n := b.tgt.opens.Load() - before; n != 1 {
			t.Fatalf("%s: %d downloads, want 1 (a rebuild)", name, n)
		}
		if _, err := os.Stat(idx + ".tmp"); !os.IsNotExist(err) {
			t.Fatalf("%s: a temporary file was left: %v", name, err)
		}
	}
	rebuilt("Missing", func() { os.Remove(idx) })
	rebuilt("Garbage", func() { os.WriteFile(idx, bytes.Repeat([]byte("garbage!"), 4096), 0o600) })
	rebuilt("Truncated", func() { os.WriteFile(idx, good[:len(good)/2], 0o600) })
	rebuilt("Empty", func() { os.WriteFile(idx, nil, 0o600) })
	// A crash half-way through a build leaves its temporary file, and maybe no index.
	rebuilt("CrashedBuild", func() {
		os.Remove(idx)
		os.WriteFile(idx+".tmp", good[:len(good)/3], 0o600)
	})
	// The snapshot's index on the target changed size: the cached one is stale.
	rebuilt("Stale", func() { b.publish(t, run, 60) })
	page := b.list(t, cache, run, restore.ListOptions{Prefix: "srv/d0", Limit: 1000})
	if page.Total != 9 {
		t.Fatalf("after the stale index: %d files in srv/d0, want 9 of 60", page.Total)
	}
	// A hostile index fails like List, leaving nothing to use.
	zw, _ := zstd.NewWriter(nil)
	os.WriteFile(src, zw.EncodeAll([]byte("{\"path\":\n"), nil), 0o600)
	if _, err := cache.List(context.Background(), b.tgt, run, opts); err == nil {
		t.Fatal("a bad entries line was indexed")
	}
	if _, err := os.Stat(idx); !os.IsNotExist(err) {
		t.Fatalf("an index is left after a failed build: %v", err)
	}
	if _, err := cache.List(context.Background(), b.tgt, run, restore.ListOptions{Cursor: "x"}); err == nil {
		t.Fatal("a bad cursor was accepted")
	}
}

// TestIndexCacheConcurrentFirstRequestsBuildOnce: requests that arrive while the index is being
// built wait for that build (one download), and all get the same pages; a request whose context
// ends stops waiting without stopping the build.
func TestIndexCacheConcurrentFirstRequestsBuildOnce(t *testing.T) {
	t.Parallel()
	b := setupCache(t)
	b.tgt.hold = make(chan struct{})
	run := targets.RunRef{JobID: "job", RunID: uuid(1)}
	b.publish(t, run, 200)
	cache := operations.NewIndexCache(filepath.Join(t.TempDir(), "entries"), 0)
	opts := restore.ListOptions{Prefix: "srv/d1", Limit: 5}
	var wg sync.WaitGroup
	pages := make([]restore.Page, 8)
	errs := make([]error, len(pages))
	for i := range pages {
		wg.Go(func() { pages[i], errs[i] = cache.List(context.Background(), b.tgt, run, opts) })
	}
	// One request is downloading (held); give up on one more while it waits.
	for b.tgt.opens.Load() == 0 {
		if time.Now().After(deadline(t)) {
			t.Fatal("no build started")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := cache.List(ctx, b.tgt, run, opts); err == nil {
		t.Fatal("a cancelled request got a page while the index was being built")
	}
	close(b.tgt.hold)
	wg.Wait()
	for i := range pages {
		if errs[i] != nil || !reflect.DeepEqual(pages[i], pages[0]) || len(pages[i].Entries) != 5 {
			t.Fatalf("request %d: %+v %v", i, pages[i], errs[i])
		}
	}
	if n := b.tgt.opens.Load(); n != 1 {
		t.Fatalf("%d downloads for concurrent first requests, want 1", n)
	}
}

func deadline(t *testing.T) time.Time {
	if d, ok := t.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Minute)
}

// TestIndexCacheEvictsLeastRecentlyUsedBySize: past its size bound the cache drops the indexes
// used longest ago, keeping the one just built and those used since.
func TestIndexCacheEvictsLeastRecentlyUsedBySize(t *testing.T) {
	t.Parallel()
	b := setupCache(t)
	dir := filepath.Join(t.TempDir(), "entries")
	runs := make([]targets.RunRef, 4)
	for i := range runs {
		runs[i] = targets.RunRef{JobID: "job", RunID: uuid(i + 1)}
		b.publish(t, runs[i], 2000)
	}
	// Measure one index, then allow a little under three.
	probe := operations.NewIndexCache(filepath.Join(t.TempDir(), "probe"), 0)
	b.list(t, probe, runs[0], restore.ListOptions{})
	fi, err := os.Stat(filepath.Join(probe.Dir(), runs[0].RunID, operations.IndexName))
	if err != nil {
		t.Fatal(err)
	}
	cache := operations.NewIndexCache(dir, 3*fi.Size()-1)
	age := func(run targets.RunRef, ago time.Duration) {
		t.Helper()
		at := time.Now().Add(-ago)
		if err := os.Chtimes(filepath.Join(dir, run.RunID, operations.IndexName), at, at); err != nil {
			t.Fatal(err)
		}
	}
	present := func() []bool {
		out := make([]bool, len(runs))
		for i, r := range runs {
			_, err := os.Stat(filepath.Join(dir, r.RunID, operations.IndexName))
			out[i] = err == nil
		}
		return out
	}
	for i := range 2 {
		b.list(t, cache, runs[i], restore.ListOptions{})
	}
	age(runs[0], 3*time.Hour)
	age(runs[1], 2*time.Hour)
	// Run 0 is read again (its use refreshes it); run 2 makes three, over the bound: run 1,
	// the least recently used, goes.
	b.list(t, cache, runs[0], restore.ListOptions{})
	b.list(t, cache, runs[2], restore.ListOptions{})
	if got := present(); !reflect.DeepEqual(got, []bool{true, false, true, false}) {
		t.Fatalf("indexes present %v, want runs 0 and 2", got)
	}
	// A bound below one index keeps only the one in use.
	small := operations.NewIndexCache(dir, 1)
	b.list(t, small, runs[3], restore.ListOptions{})
	if got := present(); !reflect.DeepEqual(got, []bool{false, false, false, true}) {
		t.Fatalf("indexes present %v, want only run 3", got)
	}
}

// TestIndexCachePruneUnused: an agent's cache drops the indexes nobody used since the cutoff
// and keeps those used again.
func TestIndexCachePruneUnused(t *testing.T) {
	t.Parallel()
	b := setupCache(t)
	used, stale := targets.RunRef{JobID: "job", RunID: uuid(1)}, targets.RunRef{JobID: "job", RunID: uuid(2)}
	cache := operations.NewIndexCache(filepath.Join(t.TempDir(), "cache", "entries"), 0)
	long := time.Now().Add(-30 * 24 * time.Hour)
	for _, run := range []targets.RunRef{used, stale} {
		b.publish(t, run, 10)
		b.list(t, cache, run, restore.ListOptions{})
		if err := os.Chtimes(filepath.Join(cache.Dir(), run.RunID, operations.IndexName), long, long); err != nil {
			t.Fatal(err)
		}
	}
	// An older version's cached download, unused as long.
	old := filepath.Join(cache.Dir(), uuid(3), targets.EntriesName)
	os.MkdirAll(filepath.Dir(old), 0o700)
	os.WriteFile(old, []byte("x"), 0o600)
	os.Chtimes(old, long, long)
	b.list(t, cache, used, restore.ListOptions{})
	if err := cache.PruneUnused(time.Now().Add(-7 * 24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cache.Dir(), used.RunID, operations.IndexName)); err != nil {
		t.Fatalf("the index in use was dropped: %v", err)
	}
	for _, id := range []string{stale.RunID, uuid(3)} {
		if _, err := os.Stat(filepath.Join(cache.Dir(), id)); !os.IsNotExist(err) {
			t.Fatalf("the unused index %s was kept: %v", id, err)
		}
	}
	if err := cache.Drop("../escape"); err == nil {
		t.Fatal("Drop accepted a run id that leaves the cache")
	}
}
