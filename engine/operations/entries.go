package operations

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
)

// IndexCache keeps snapshots' entries indexes under <Dir>/<run_id>/entries.jsonl.zst, so that
// paging through a large snapshot in the restore picker downloads its index once. A per-run lock
// keeps two requests from downloading the same index over each other. The Hub keeps one under
// <data_dir>/cache/entries for the snapshots it reads, and an agent one under its own data
// directory for the snapshots only it can read.
type IndexCache struct {
	dir   string
	mu    sync.Mutex
	locks map[string]*entryLock
}

// NewIndexCache returns a cache in dir (created on first use).
func NewIndexCache(dir string) *IndexCache { return &IndexCache{dir: dir} }

// Dir is the cache's directory.
func (c *IndexCache) Dir() string { return c.dir }

type entryLock struct {
	sync.Mutex
	users int
}

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

// Fetch returns the local copy of run's index, downloading it from t when missing (or of another
// size than the target's). It touches the copy, so that PruneUnused keeps indexes in use.
func (c *IndexCache) Fetch(ctx context.Context, t targets.Target, run targets.RunRef) (string, error) {
	if err := targets.ValidateRun(run); err != nil {
		return "", err
	}
	dir := filepath.Join(c.dir, run.RunID)
	path := filepath.Join(dir, targets.EntriesName)
	unlock := c.lock(run.RunID)
	defer unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create entries cache: %w", err)
	}
	if err := restore.FetchIndex(ctx, t, run, path); err != nil {
		return "", fmt.Errorf("fetch entries index of run %s: %w", run.RunID, err)
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now) // only PruneUnused reads it; a failure keeps the old time
	return path, nil
}

// List returns one page of the children of opts.Prefix in run's snapshot on t. Errors:
// ErrInvalidCursor, or the target's.
func (c *IndexCache) List(ctx context.Context, t targets.Target, run targets.RunRef, opts restore.ListOptions) (restore.Page, error) {
	path, err := c.Fetch(ctx, t, run)
	if err != nil {
		return restore.Page{}, err
	}
	page, err := restore.List(path, opts)
	var re *restore.Error
	if errors.As(err, &re) && re.Code == restore.CodeSelection {
		return restore.Page{}, ErrInvalidCursor
	}
	return page, err
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

// PruneUnused drops the cached indexes not fetched since before; for a cache that cannot ask
// which snapshots still exist (an agent's).
func (c *IndexCache) PruneUnused(before time.Time) error {
	dirs, err := os.ReadDir(c.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		fi, err := os.Stat(filepath.Join(c.dir, d.Name(), targets.EntriesName))
		if err == nil && !fi.ModTime().Before(before) {
			continue
		}
		errs = append(errs, c.Drop(d.Name()))
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
	return errors.Join(errs...)
}
