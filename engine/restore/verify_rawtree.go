package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/targets"
)

// verifyRawTree checks a raw_tree_v1 snapshot where it lies: every kind=file record (or a
// sample of them) must have data/<path> on the target with the recorded size and BLAKE3, and the
// index must have as many lines as the manifest says. Nothing is restored; a SQLite snapshot is
// downloaded alone for its integrity check. A damaged or missing file is a failed check in the
// result, not an error; a target that cannot be read at all is an error.
func verifyRawTree(ctx context.Context, req VerifyRequest, run targets.RunRef, m *format.Manifest) (VerifyResult, error) {
	res := VerifyResult{Errors: []string{}}
	indexPath := filepath.Join(req.ScratchDir, targets.EntriesName)
	if err := FetchIndex(ctx, req.Target, run, indexPath); err != nil {
		return res, err
	}
	var sample map[string]bool
	if req.SampleFiles > 0 {
		picked, err := pickSample(indexPath, req.SampleFiles)
		if err != nil {
			return res, err
		}
		sample = map[string]bool{}
		for _, p := range picked {
			sample[p] = true
		}
		emit(req.Events, "info", "sample", fmt.Sprintf("restore test of %d sampled files", len(picked)),
			map[string]any{"sample_files": req.SampleFiles, "picked": len(picked)})
	}
	req.Progress.Stage("verify", &progress.Units{Files: uint64(max(m.EntryIndex.Count, 0))})
	buf := make([]byte, 1<<20)
	var count int64
	var bytes uint64
	var sqliteEntry *format.Entry
	err := scanIndex(indexPath, func(e format.Entry) error {
		count++
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Kind != format.KindFile {
			return nil
		}
		if req.SQLiteSnapshot != "" && e.Path == req.SQLiteSnapshot {
			ec := e
			sqliteEntry = &ec
		}
		if sample != nil && !sample[e.Path] {
			return nil
		}
		res.FilesTotal++
		rel, why := cleanName(e.Path)
		if why == "" && targets.ValidateName(targets.DataName(rel)) != nil {
			why = "cannot name a data/ file"
		}
		switch {
		case why != "":
			res.fail(e.Path + ": refused: " + why)
			return nil
		case e.Hash == nil:
			res.fail(e.Path + ": missing hash in index")
			return nil
		}
		n, msg, err := checkDataFile(ctx, req.Target, run, rel, e, io.Discard, buf)
		if err != nil {
			return err
		}
		bytes += uint64(n)
		if msg != "" {
			res.fail(e.Path + ": " + msg)
		} else {
			res.FilesOK++
		}
		req.Progress.Set(progress.Units{Files: uint64(count), Bytes: bytes})
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return res, &Error{Code: CodeCanceled, Err: ctx.Err()}
		}
		return res, err
	}
	res.finish(req.Events, count, m.EntryIndex.Count, req.SQLiteSnapshot, func() ([]string, bool) {
		return verifyRawSQLite(ctx, req, run, sqliteEntry, buf)
	})
	return res, nil
}

// checkDataFile streams data/<rel> into dst and compares it with e. msg describes a missing or
// damaged file; err is a failure to read the target at all (or cancellation).
func checkDataFile(ctx context.Context, t targets.Target, run targets.RunRef, rel string, e format.Entry, dst io.Writer, buf []byte) (int64, string, error) {
	rt := &rawRestorer{x: &extractor{buf: buf}, t: t, run: run}
	n, err := rt.fetch(ctx, rel, e, dst)
	if err == nil {
		return n, "", nil
	}
	// Any failure to get this one file right fails this file; only cancellation ends the check
	// (a target that is down fails every file, which fails the drill all the same).
	var pe *PartError
	if errors.As(err, &pe) {
		if pe.Reason == "missing" {
			return n, "missing: data/" + rel + " is not on the target", nil
		}
		return n, pe.Reason + ": " + pe.Err.Error(), nil
	}
	return n, "", err
}

// verifyRawSQLite downloads the snapshot's database (checked like any data file) and runs the
// integrity check on it.
func verifyRawSQLite(ctx context.Context, req VerifyRequest, run targets.RunRef, e *format.Entry, buf []byte) ([]string, bool) {
	if e == nil {
		return []string{"database missing from the snapshot index"}, false
	}
	rel, why := cleanName(e.Path)
	if why != "" {
		return []string{"database path refused: " + why}, false
	}
	p := filepath.Join(req.ScratchDir, "sqlite", "db.sqlite3")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return []string{err.Error()}, false
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return []string{err.Error()}, false
	}
	_, msg, err := checkDataFile(ctx, req.Target, run, rel, *e, f, buf)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	switch {
	case err != nil:
		return []string{"database could not be read: " + err.Error()}, false
	case msg != "":
		return []string{"database " + msg}, false
	}
	return integrityCheck(ctx, p)
}
