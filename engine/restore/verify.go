package restore

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/targets"
)

// VerifyRequest is a restore drill: a full restore into ScratchDir, then every file checked
// against the entries index.
type VerifyRequest struct {
	JobID, RunID string
	Target       targets.Target
	// ScratchDir is removed when Verify returns.
	ScratchDir string
	Keys       IdentityProvider
	// SQLiteSnapshot names the database to integrity-check inside the snapshot: the run
	// summary's sqlite.snapshot_name, or "db.sqlite3" for Vaultwarden; empty skips the check.
	SQLiteSnapshot string
	Events         EventSink
	Progress       *progress.Reporter
	// SampleFiles > 0 restores and checks only that many files picked at random plus the
	// largest one (a restore_test drill with sample_files); 0 restores and checks every file.
	SampleFiles int
}

// VerifyResult is the summary of backup.md §10.
type VerifyResult struct {
	OK          bool          `json:"ok"`
	FilesTotal  int64         `json:"files_total"`
	FilesOK     int64         `json:"files_ok"`
	FilesFailed int64         `json:"files_failed"`
	SQLiteOK    *bool         `json:"sqlite_ok"`
	SQLite      *SQLiteVerify `json:"sqlite"`
	Errors      []string      `json:"errors"` // at most 10 samples
}

// SQLiteVerify is the integrity check of the restored database.
type SQLiteVerify struct {
	Path  string   `json:"path"`
	Lines []string `json:"lines"`
}

const maxVerifyErrors = 10

// Verify restores the run into a scratch directory and compares it with the entries index.
// A missing or damaged part fails with a *PartError naming it; content mismatches are
// reported in the result (OK false) with a nil error.
func Verify(ctx context.Context, req VerifyRequest) (VerifyResult, error) {
	res := VerifyResult{Errors: []string{}}
	if err := os.MkdirAll(req.ScratchDir, 0o700); err != nil {
		return res, &Error{Code: CodeIO, Err: fmt.Errorf("create scratch: %w", err)}
	}
	defer os.RemoveAll(req.ScratchDir)
	dest := filepath.Join(req.ScratchDir, "restore")
	run := targets.RunRef{JobID: req.JobID, RunID: req.RunID}
	if m, err := ReadManifest(ctx, req.Target, run); err != nil {
		return res, err
	} else if m.Pipeline.Format == format.FormatRawTreeV1 {
		return verifyRawTree(ctx, req, run, m)
	}
	indexPath := filepath.Join(req.ScratchDir, targets.EntriesName)
	var sel *Selection
	var sample map[string]bool // nil: every file is checked
	if req.SampleFiles > 0 {
		if err := FetchIndex(ctx, req.Target, run, indexPath); err != nil {
			return res, err
		}
		picked, err := pickSample(indexPath, req.SampleFiles)
		if err != nil {
			return res, err
		}
		sample = map[string]bool{}
		sel = &Selection{Files: []string{}}
		for _, p := range picked {
			sample[p] = true
			sel.Files = append(sel.Files, p)
		}
		if req.SQLiteSnapshot != "" {
			sel.Files = append(sel.Files, req.SQLiteSnapshot)
		}
		emit(req.Events, "info", "sample", fmt.Sprintf("restore test of %d sampled files", len(picked)),
			map[string]any{"sample_files": req.SampleFiles, "picked": len(picked)})
	}
	rr, err := Restore(ctx, Request{
		JobID: req.JobID, RunID: req.RunID, Target: req.Target, Destination: dest,
		StagingDir: filepath.Join(req.ScratchDir, "staging"), Conflict: ConflictOverwrite,
		Selection: sel, Keys: req.Keys, Events: req.Events, Progress: req.Progress,
	})
	if err != nil {
		return res, err
	}
	if sample == nil {
		if err := FetchIndex(ctx, req.Target, run, indexPath); err != nil {
			return res, err
		}
	}
	req.Progress.Stage("verify", &progress.Units{Files: uint64(rr.Manifest.EntryIndex.Count)})
	var count int64
	err = scanIndex(indexPath, func(e format.Entry) error {
		count++
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Kind != format.KindFile || (sample != nil && !sample[e.Path]) {
			return nil
		}
		res.FilesTotal++
		if e.Hash == nil {
			res.fail(e.Path + ": missing hash in index")
			return nil
		}
		p, why := insideDest(dest, e.Path)
		if why != "" {
			res.fail(e.Path + ": refused: " + why)
			return nil
		}
		size, hash, err := hashFile(p)
		switch {
		case errors.Is(err, errNotRegular):
			res.fail(e.Path + ": " + err.Error())
		case err != nil:
			res.fail(e.Path + ": missing: " + err.Error())
		case size != e.Size:
			res.fail(fmt.Sprintf("%s: size %d, index says %d", e.Path, size, e.Size))
		case hash != *e.Hash:
			res.fail(e.Path + ": hash mismatch")
		default:
			res.FilesOK++
		}
		req.Progress.Set(progress.Units{Files: uint64(count)})
		return nil
	})
	if err != nil {
		return res, err
	}
	res.finish(req.Events, count, rr.Manifest.EntryIndex.Count, req.SQLiteSnapshot, func() ([]string, bool) {
		p, why := insideDest(dest, req.SQLiteSnapshot)
		if why != "" {
			return []string{"database path refused: " + why}, false
		}
		return integrityCheck(ctx, p)
	})
	return res, nil
}

// fail counts a file that did not check out; the first maxVerifyErrors messages are kept.
func (res *VerifyResult) fail(msg string) {
	res.FilesFailed++
	if len(res.Errors) < maxVerifyErrors {
		res.Errors = append(res.Errors, msg)
	}
}

// finish fails a check whose index had count lines where the manifest says want, runs the
// SQLite integrity check (sqlite) when the request names a database, sets the verdict and
// reports it.
func (res *VerifyResult) finish(events EventSink, count, want int64, sqlitePath string, sqlite func() ([]string, bool)) {
	if count != want {
		if len(res.Errors) < maxVerifyErrors {
			res.Errors = append(res.Errors, fmt.Sprintf("entries_count mismatch: index has %d lines, manifest says %d", count, want))
		}
		res.FilesFailed = max(res.FilesFailed, 1)
	}
	sqliteOK := true
	if sqlitePath != "" {
		lines, ok := sqlite()
		res.SQLiteOK = &ok
		res.SQLite = &SQLiteVerify{Path: sqlitePath, Lines: lines}
		sqliteOK = ok
	}
	res.OK = res.FilesFailed == 0 && sqliteOK
	level := "info"
	if !res.OK {
		level = "error"
	}
	emit(events, level, "verify", "verify finished", map[string]any{
		"ok": res.OK, "files_total": res.FilesTotal, "files_ok": res.FilesOK, "files_failed": res.FilesFailed,
		"sqlite_ok": res.SQLiteOK, "errors": res.Errors,
	})
}

// pickSample chooses n regular files of the index uniformly at random (reservoir sampling, one
// pass, n+1 paths in memory) plus the largest file, which a sample would otherwise rarely include
// and which spans the most parts.
func pickSample(indexPath string, n int) ([]string, error) {
	var (
		reservoir []string
		seen      int
		largest   string
		maxSize   int64 = -1
	)
	err := scanIndex(indexPath, func(e format.Entry) error {
		if e.Kind != format.KindFile {
			return nil
		}
		if e.Size > maxSize {
			largest, maxSize = e.Path, e.Size
		}
		// A reservoir of n+1 files: whether or not it holds the largest, the others in it are a
		// uniform pick, so n random files plus the largest can be taken from it below.
		seen++
		if len(reservoir) < n+1 {
			reservoir = append(reservoir, e.Path)
		} else if j := rand.IntN(seen); j < n+1 {
			reservoir[j] = e.Path
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if maxSize >= 0 && !slices.Contains(reservoir, largest) {
		if len(reservoir) == n+1 {
			i := rand.IntN(len(reservoir))
			reservoir = slices.Delete(reservoir, i, i+1)
		}
		reservoir = append(reservoir, largest)
	}
	return reservoir, nil
}

// insideDest maps an index path to where the restore put it, or says why it is refused: the
// index is read from the target, so a crafted one must not point verify at files outside dest
// (absolute paths, "..", or a parent that is a symlink, all refused as restore refuses them).
func insideDest(dest, indexPath string) (string, string) {
	rel, why := cleanName(indexPath)
	if why == "" {
		why = checkParents(dest, rel)
	}
	if why != "" {
		return "", why
	}
	return filepath.Join(dest, filepath.FromSlash(rel)), ""
}

var errNotRegular = errors.New("not a regular file")

// hashFile hashes the regular file at p. It never follows a symlink in the last component
// (the index says "file"; a symlink restored there could point anywhere) and never blocks on
// a FIFO.
func hashFile(p string) (int64, string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return 0, "", fmt.Errorf("%w (symlink)", errNotRegular)
	}
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	if !fi.Mode().IsRegular() {
		return 0, "", fmt.Errorf("%w (%s)", errNotRegular, fi.Mode().Type())
	}
	h := blake3.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// integrityCheck runs backup's PRAGMA integrity_check on the restored database, after making
// sure it is a regular file (the path comes from the snapshot, not from the Hub).
func integrityCheck(ctx context.Context, p string) ([]string, bool) {
	fi, err := os.Lstat(p)
	if err != nil {
		return []string{"database missing from the snapshot: " + err.Error()}, false
	}
	if !fi.Mode().IsRegular() {
		return []string{"database is not a regular file (" + fi.Mode().Type().String() + ")"}, false
	}
	ic, err := backup.IntegrityCheckFile(ctx, p)
	if err != nil {
		return []string{err.Error()}, false
	}
	return ic.Lines, ic.OK
}

// FetchIndex downloads the run's entries.jsonl.zst to path, unless a file of the same size is
// already there (a cache the caller may keep between picker requests).
func FetchIndex(ctx context.Context, t targets.Target, run targets.RunRef, path string) error {
	size, err := t.Size(ctx, run, targets.EntriesName)
	if err != nil {
		return fmt.Errorf("size of entries index: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() == size {
		return nil
	}
	rc, err := t.Open(ctx, run, targets.EntriesName)
	if err != nil {
		return fmt.Errorf("open entries index: %w", err)
	}
	defer rc.Close()
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cache entries index: %w", err)
	}
	n, err := io.Copy(f, &ctxReader{ctx: ctx, r: rc})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("got %d bytes, expected %d", n, size)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("download entries index: %w", err)
	}
	return os.Rename(tmp, path)
}

// scanIndex streams the lines of a local entries.jsonl.zst.
func scanIndex(path string, fn func(format.Entry) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open entries index: %w", err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("read entries index: %w", err)
	}
	defer zr.Close()
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var e format.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("entries index line: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read entries index: %w", err)
	}
	return nil
}
