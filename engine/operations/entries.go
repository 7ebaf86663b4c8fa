package operations

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
)

// IndexCache keeps a browse index (restore.BuildIndex) of each snapshot the restore picker
// reads, under <Dir>/<run_id>/browse.sqlite, so that a page costs the rows of one directory
// instead of a pass over the whole entries.jsonl.zst. An index is built once, on first use:
// concurrent first requests share one build, which downloads the snapshot's entries.jsonl.zst
// next to it, builds into a temporary file renamed into place (a crash never leaves a half
// index under the final name), then removes the download. One that is missing, stale (built
// from a file of another size than the target's), incomplete or unreadable is rebuilt. The
// cache is bounded by size: after each build the least recently used indexes go until the
// total is at most MaxBytes (the one just built stays, even alone above the limit). The Hub
// keeps one under <data_dir>/cache/entries for the snapshots it reads, and an agent one under
// its own data directory for the snapshots only it can read.
type IndexCache struct {
	dir      string
	maxBytes int64

	mu      sync.Mutex
	locks   map[string]*entryLock
	flights map[string]*flight
}

// DefaultEntriesCacheMaxBytes bounds an entries cache by default (1 GiB: about twenty indexes
// of a million files).
const DefaultEntriesCacheMaxBytes int64 = 1 << 30

// IndexName is the browse index's file name in its run's cache directory.
const IndexName = "browse.sqlite"

// NewIndexCache returns a cache in dir (created on first use) holding at most maxBytes
// (DefaultEntriesCacheMaxBytes when ≤ 0).
func NewIndexCache(dir string, maxBytes int64) *IndexCache {
	if maxBytes <= 0 {
		maxBytes = DefaultEntriesCacheMaxBytes
	}
	return &IndexCache{dir: dir, maxBytes: maxBytes}
}

// Dir is the cache's directory.
func (c *IndexCache) Dir() string { return c.dir }

type entryLock struct {
	sync.Mutex
	users int
}

// flight is one build of a run's index that later requests wait for instead of building again.
type flight struct {
	done chan struct{}
	err  error
}

// lock serializes what changes a run's directory (build, drop).
func (c *IndexCache) lock(runID string) func() {
	c.mu.Lock()
	if c.locks == nil {
		c.locks = map[string]*entryLock{}
	}
	l := c.locks[runID]
	if l == nil {
		l = &entryLock{}
		c.locks[runID] = l
	}
	l.users++
	c.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		c.mu.Lock()
		if l.users--; l.users == 0 {
			delete(c.locks, runID)
		}
		c.mu.Unlock()
	}
}

// ErrInvalidCursor is returned by Entries for a cursor it did not hand out.
var ErrInvalidCursor = errors.New("invalid cursor")

// Open returns run's browse index, building it first when it is missing, stale or invalid. It
// touches the index, so that eviction and PruneUnused keep indexes in use. Close it after use.
func (c *IndexCache) Open(ctx context.Context, t targets.Target, run targets.RunRef) (*restore.Index, error) {
	if err := targets.ValidateRun(run); err != nil {
		return nil, err
	}
	// The target's size of entries.jsonl.zst tells a stale index (a snapshot written again
	// under the same run id) from a current one.
	size, err := t.Size(ctx, run, targets.EntriesName)
	if err != nil {
		return nil, fmt.Errorf("size of entries index of run %s: %w", run.RunID, err)
	}
	path := filepath.Join(c.dir, run.RunID, IndexName)
	for built := false; ; built = true {
		ix, err := restore.OpenIndex(ctx, path, size)
		if err == nil {
			now := time.Now()
			_ = os.Chtimes(path, now, now) // only eviction reads it; a failure keeps the old time
			return ix, nil
		}
		if built || !errors.Is(err, restore.ErrIndexInvalid) {
			return nil, fmt.Errorf("open browse index of run %s: %w", run.RunID, err)
		}
		if err := c.build(ctx, t, run, size); err != nil {
			return nil, err
		}
	}
}

// build builds run's index once however many requests ask at the same time; each waits with
// its own context, the one that started the build too. The build goes on when they give up: the
// next page would only have to start it again.
func (c *IndexCache) build(ctx context.Context, t targets.Target, run targets.RunRef, size int64) error {
	c.mu.Lock()
	f := c.flights[run.RunID]
	if f == nil {
		if c.flights == nil {
			c.flights = map[string]*flight{}
		}
		f = &flight{done: make(chan struct{})}
		c.flights[run.RunID] = f
		go func() {
			f.err = c.buildLocked(context.WithoutCancel(ctx), t, run, size)
			if f.err == nil {
				// Before the waiters go on, so that the cache is within its bound when they read.
				_ = c.Evict(run.RunID) // best effort: a failure leaves the cache larger, not wrong
			}
			c.mu.Lock()
			delete(c.flights, run.RunID)
			c.mu.Unlock()
			close(f.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *IndexCache) buildLocked(ctx context.Context, t targets.Target, run targets.RunRef, size int64) error {
	unlock := c.lock(run.RunID)
	defer unlock()
	dir := filepath.Join(c.dir, run.RunID)
	path := filepath.Join(dir, IndexName)
	// A build that ended between this request's look and its flight already did the work.
	if ix, err := restore.OpenIndex(ctx, path, size); err == nil {
		return ix.Close()
	}
	// What is there is of no use (stale or damaged) whether or not this build succeeds.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove invalid browse index of run %s: %w", run.RunID, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create entries cache: %w", err)
	}
	src := filepath.Join(dir, targets.EntriesName)
	if err := restore.FetchIndex(ctx, t, run, src); err != nil {
		return fmt.Errorf("fetch entries index of run %s: %w", run.RunID, err)
	}
	tmp := path + ".tmp"
	err := restore.BuildIndex(ctx, src, tmp)
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("index entries of run %s: %w", run.RunID, err)
	}
	syncDir(dir)
	// The index answers everything now; the download only took space.
	_ = os.Remove(src)
	return nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a rename durable; best effort, since an index lost to a crash is rebuilt.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// List returns one page of the children of opts.Prefix in run's snapshot on t. An index that
// opens but cannot answer (a damaged file) is dropped and built again once. Errors:
// ErrInvalidCursor, or the target's.
func (c *IndexCache) List(ctx context.Context, t targets.Target, run targets.RunRef, opts restore.ListOptions) (restore.Page, error) {
	for retried := false; ; retried = true {
		ix, err := c.Open(ctx, t, run)
		if err != nil {
			return restore.Page{}, err
		}
		page, err := ix.List(ctx, opts)
		ix.Close()
		var re *restore.Error
		if errors.As(err, &re) && re.Code == restore.CodeSelection {
			return restore.Page{}, ErrInvalidCursor
		}
		if err == nil || retried || ctx.Err() != nil {
			return page, err
		}
		if derr := c.Drop(run.RunID); derr != nil {
			return restore.Page{}, errors.Join(err, derr)
		}
	}
}

// Drop forgets the cached index of a run (its snapshot was deleted).
func (c *IndexCache) Drop(runID string) error {
	if err := targets.ValidateRun(targets.RunRef{JobID: "x", RunID: runID}); err != nil {
		return err
	}
	unlock := c.lock(runID)
	defer unlock()
	return os.RemoveAll(filepath.Join(c.dir, runID))
}

// cached is one run's directory in the cache.
type cached struct {
	runID string
	bytes int64
	used  time.Time // last use of its index (or of what an older version left there)
}

func (c *IndexCache) scan() ([]cached, error) {
	dirs, err := os.ReadDir(c.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read entries cache: %w", err)
	}
	var out []cached
	for _, d := range dirs {
		it := cached{runID: d.Name()}
		files, _ := os.ReadDir(filepath.Join(c.dir, d.Name()))
		for _, f := range files {
			fi, err := f.Info()
			if err != nil {
				continue
			}
			it.bytes += fi.Size()
			if (f.Name() == IndexName || f.Name() == targets.EntriesName) && fi.ModTime().After(it.used) {
				it.used = fi.ModTime()
			}
		}
		out = append(out, it)
	}
	return out, nil
}

// Evict drops the least recently used indexes until the cache holds at most its MaxBytes,
// keeping keep (the index a request is about to use) and those being built.
func (c *IndexCache) Evict(keep string) error {
	items, err := c.scan()
	if err != nil {
		return err
	}
	var total int64
	for _, it := range items {
		total += it.bytes
	}
	if total <= c.maxBytes {
		return nil
	}
	slices.SortFunc(items, func(a, b cached) int { return a.used.Compare(b.used) })
	var errs []error
	for _, it := range items {
		if total <= c.maxBytes {
			break
		}
		c.mu.Lock()
		_, building := c.flights[it.runID]
		c.mu.Unlock()
		if it.runID == keep || building {
			continue
		}
		if err := c.Drop(it.runID); err != nil {
			errs = append(errs, err)
			continue
		}
		total -= it.bytes
	}
	return errors.Join(errs...)
}

// PruneUnused drops the cached indexes not used since before; for a cache that cannot ask
// which snapshots still exist (an agent's).
func (c *IndexCache) PruneUnused(before time.Time) error {
	items, err := c.scan()
	if err != nil {
		return err
	}
	var errs []error
	for _, it := range items {
		if it.used.Before(before) {
			errs = append(errs, c.Drop(it.runID))
		}
	}
	return errors.Join(errs...)
}

// EntriesTask is what an agent needs to list a snapshot's entries index.
type EntriesTask struct {
	JobID   string
	RunID   string
	Target  targets.RunTarget // where the snapshot lives
	Options restore.ListOptions
}

// Entries lists one directory of a run's snapshot for the restore picker. A snapshot in an
// agent's directory is listed by that agent (Remote implementing RemoteEntries). Errors:
// ErrRunNotFound, *InputError (not a restorable snapshot), ErrInvalidCursor, *AgentError, or the
// target's.
func (s *Service) Entries(ctx context.Context, runID string, opts restore.ListOptions) (restore.Page, error) {
	snap, err := s.snapshotOf(ctx, runID)
	if err != nil {
		return restore.Page{}, err
	}
	if onAgentOnly(snap.target) {
		if re, ok := s.remote.(RemoteEntries); ok {
			return re.Entries(ctx, snap.target.NodeID, EntriesTask{JobID: snap.run.JobID, RunID: snap.run.ID, Target: snap.target, Options: opts})
		}
	}
	tgt, err := s.opener.Open(ctx, snap.target)
	if err != nil {
		return restore.Page{}, err
	}
	return s.entries.List(ctx, tgt, targets.RunRef{JobID: snap.run.JobID, RunID: snap.run.ID}, opts)
}

// DropEntries forgets the cached index of a run (its snapshot was deleted).
func (s *Service) DropEntries(runID string) error { return s.entries.Drop(runID) }

// pruneEntries removes cached indexes of snapshots that are no longer restorable (deleted,
// missing, or whose run is gone), so that the cache does not grow forever.
func (s *Service) pruneEntries(ctx context.Context) error {
	dirs, err := os.ReadDir(s.entries.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		runID := d.Name()
		if _, err := s.snapshotOf(ctx, runID); err != nil {
			var ie *InputError
			if errors.Is(err, ErrRunNotFound) || errors.As(err, &ie) {
				errs = append(errs, s.DropEntries(runID))
				continue
			}
			errs = append(errs, err)
		}
	}
	// The limit may have been lowered since the last run.
	errs = append(errs, s.entries.Evict(""))
	return errors.Join(errs...)
}
