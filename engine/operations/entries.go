package operations

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
)

// entryCache keeps each snapshot's entries index under <data_dir>/cache/entries/<run_id>/, so
// that paging through a large snapshot in the restore picker downloads its index once. A
// per-run lock keeps two requests from downloading the same index over each other.
type entryCache struct {
	dir   string
	mu    sync.Mutex
	locks map[string]*entryLock
}

type entryLock struct {
	sync.Mutex
	users int
}

func (c *entryCache) lock(runID string) func() {
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

// Entries lists one directory of a run's snapshot for the restore picker. Errors:
// ErrRunNotFound, *InputError (not a restorable snapshot), ErrInvalidCursor, or the target's.
func (s *Service) Entries(ctx context.Context, runID string, opts restore.ListOptions) (restore.Page, error) {
	snap, err := s.snapshotOf(ctx, runID)
	if err != nil {
		return restore.Page{}, err
	}
	path, err := s.cachedIndex(ctx, snap)
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

// cachedIndex returns the local copy of a snapshot's index, downloading it when missing (or of
// another size than the target's).
func (s *Service) cachedIndex(ctx context.Context, snap snapshot) (string, error) {
	if err := targets.ValidateRun(targets.RunRef{JobID: snap.run.JobID, RunID: snap.run.ID}); err != nil {
		return "", err
	}
	dir := filepath.Join(s.entries.dir, snap.run.ID)
	path := filepath.Join(dir, targets.EntriesName)
	unlock := s.entries.lock(snap.run.ID)
	defer unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create entries cache: %w", err)
	}
	tgt, err := s.opener.Open(ctx, snap.target)
	if err != nil {
		return "", err
	}
	run := targets.RunRef{JobID: snap.run.JobID, RunID: snap.run.ID}
	if err := restore.FetchIndex(ctx, tgt, run, path); err != nil {
		return "", fmt.Errorf("fetch entries index of run %s: %w", snap.run.ID, err)
	}
	return path, nil
}

// DropEntries forgets the cached index of a run (its snapshot was deleted).
func (s *Service) DropEntries(runID string) error {
	if err := targets.ValidateRun(targets.RunRef{JobID: "x", RunID: runID}); err != nil {
		return err
	}
	unlock := s.entries.lock(runID)
	defer unlock()
	return os.RemoveAll(filepath.Join(s.entries.dir, runID))
}

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
