package logging

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// RotatingFile writes to <path>.<period> — <path>.2026-11-26 for daily rotation,
// <path>.2026-11-26-13 for hourly, plain <path> for never — opening the next file when the UTC
// period changes and deleting the oldest beyond keep.
type RotatingFile struct {
	path     string
	rotation string
	keep     int
	now      func() time.Time

	mu     sync.Mutex
	f      *os.File
	period string
}

// NewRotatingFile opens the current file, creating its directory.
func NewRotatingFile(path, rotation string, keep int, now func() time.Time) (*RotatingFile, error) {
	if now == nil {
		now = time.Now
	}
	if keep < 1 {
		keep = 1
	}
	switch rotation {
	case "never", "hourly", "daily":
	default:
		return nil, fmt.Errorf("log rotation %q: must be never, hourly or daily", rotation)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	r := &RotatingFile{path: path, rotation: rotation, keep: keep, now: now}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.openLocked(r.periodOf(now())); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) periodOf(t time.Time) string {
	t = t.UTC()
	switch r.rotation {
	case "daily":
		return t.Format("2006-01-02")
	case "hourly":
		return t.Format("2006-01-02-15")
	}
	return ""
}

func (r *RotatingFile) name(period string) string {
	if period == "" {
		return r.path
	}
	return r.path + "." + period
}

func (r *RotatingFile) openLocked(period string) error {
	f, err := os.OpenFile(r.name(period), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.period = f, period
	r.pruneLocked()
	return nil
}

// pruneLocked deletes rotated files beyond keep; period names sort chronologically.
func (r *RotatingFile) pruneLocked() {
	if r.rotation == "never" {
		return
	}
	matches, err := filepath.Glob(r.path + ".*")
	if err != nil {
		return
	}
	var rotated []string
	for _, m := range matches {
		suffix := strings.TrimPrefix(m, r.path+".")
		if _, err := time.Parse("2006-01-02", suffix); err == nil {
			rotated = append(rotated, m)
		} else if _, err := time.Parse("2006-01-02-15", suffix); err == nil {
			rotated = append(rotated, m)
		}
	}
	sort.Strings(rotated)
	for len(rotated) > r.keep {
		os.Remove(rotated[0])
		rotated = rotated[1:]
	}
}

// Write appends p to the current period's file; a log line is never split across two files.
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if period := r.periodOf(r.now()); period != r.period {
		if err := r.openLocked(period); err != nil {
			return 0, err
		}
	}
	return r.f.Write(p)
}

// Close closes the current file.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
