package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/progress"
)

// Vaultwarden's live database files, left out of the walk: the online snapshot replaces them.
var vaultwardenSkip = map[string]bool{
	"db.sqlite3": true, "db.sqlite3-wal": true, "db.sqlite3-shm": true, "db.sqlite3-journal": true,
}

// VaultwardenDBName is the archive name of Vaultwarden's database snapshot.
const VaultwardenDBName = "db.sqlite3"

func (r *run) prepareSource(staging string) (*source, error) {
	spec := r.req.Spec
	switch {
	case spec.Filesystem != nil:
		return r.prepareFilesystem(spec.Filesystem)
	case spec.SQLite != nil:
		return r.prepareSQLite(staging, spec.SQLite)
	case spec.Vaultwarden != nil:
		return r.prepareVaultwarden(staging, spec.Vaultwarden)
	}
	return nil, newErr(CodeInvalidSpec, KindConfig, "The job has no source.", fmt.Errorf("no source in spec"))
}

func (r *run) prepareFilesystem(fs *jobspec.FilesystemSource) (*source, error) {
	r.issues = newFSIssues(fs.ErrorPolicy)
	r.cons = newConsistency()
	w, err := newFilesystemWalker(fs, r.issues)
	if err != nil {
		return nil, err
	}
	w.cons = r.cons
	sum := &FilesystemSummary{Consistency: r.cons}
	r.summary.Filesystem = sum
	if fs.SnapshotMode == jobspec.SnapshotAuto {
		// No snapshot provider exists in this version: auto reads the live tree, and says so.
		sum.Snapshot = &SourceSnapshot{Mode: fs.SnapshotMode, Status: "unavailable", Reason: "no snapshot provider is available in this version"}
		r.emit(LevelWarn, "snapshot_unavailable", "source snapshot unavailable; reading the live filesystem",
			map[string]any{"mode": fs.SnapshotMode, "reason": sum.Snapshot.Reason})
	}
	if fs.PreScan {
		r.req.Progress.Stage("scan", nil)
		r.emit(LevelInfo, "scan", "scanning the source", nil)
		total, err := r.preScan(fs)
		if err != nil {
			return nil, err
		}
		r.total = total
	}
	return &source{walker: w, hardlinkKeep: fs.HardlinkPolicy == jobspec.HardlinkKeep}, nil
}

// preScan walks the tree once with the same filters to count what packaging will read. It is
// display only: its problems are reported by the real walk. Only counting, it walks subtrees in
// parallel.
func (r *run) preScan(fs *jobspec.FilesystemSource) (*progress.Units, error) {
	quiet := newFSIssues(jobspec.ErrorSkipOK)
	w, err := newFilesystemWalker(fs, quiet)
	if err != nil {
		return nil, err
	}
	w.fork = newForker(preScanWalkers - 1)
	if preScanWalkers == 1 {
		w.fork = nil
	}
	var mu sync.Mutex
	var u progress.Units
	err = w.walk(r.ctx, func(it item) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case it.info.IsDir():
			u.Dirs++
		default:
			u.Files++
			if it.info.Mode().IsRegular() {
				u.Bytes += uint64(it.info.Size())
			}
		}
		if (u.Files+u.Dirs)%1024 == 0 {
			r.req.Progress.Set(u)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.req.Progress.Set(u)
	return &u, nil
}

// preScanWalkers is how many goroutines the pre-scan walks with (a variable for its benchmark).
var preScanWalkers = 4

func (r *run) prepareSQLite(staging string, s *jobspec.SQLiteSource) (*source, error) {
	name := filepath.Base(filepath.Clean(s.Path))
	if name == "." || name == "/" || name == "" {
		name = "database.sqlite3"
	}
	dst := filepath.Join(staging, "source", name)
	size, err := r.snapshotDB(s.Path, dst)
	if err != nil {
		return nil, err
	}
	sum := &SQLiteSummary{Path: s.Path, SnapshotName: name}
	r.summary.SQLite = sum
	if s.IntegrityCheck {
		ic, err := IntegrityCheckFile(r.ctx, dst)
		if err != nil {
			return nil, newErr(CodeIntegrityCheck, KindSource, "The database snapshot could not be checked.", err)
		}
		sum.IntegrityCheck = &ic
		if !ic.OK {
			// Checked before packaging, so a corrupt database uploads nothing.
			r.emit(LevelError, "integrity_check", "sqlite integrity_check failed", map[string]any{"lines": ic.Lines})
			return nil, newErr(CodeIntegrityCheck, KindSource, "The database is corrupt (PRAGMA integrity_check); nothing was uploaded.",
				fmt.Errorf("integrity_check: %d problems", len(ic.Lines)))
		}
		r.emit(LevelInfo, "integrity_check", "sqlite integrity_check ok", nil)
	}
	r.total = &progress.Units{Files: 1, Bytes: uint64(size)}
	r.issues = newFSIssues(jobspec.ErrorFailFast)
	w := &walker{roots: []walkRoot{{fsPath: dst, prefix: name, emitSelf: true}}, symlinks: jobspec.SymlinkKeep, issues: r.issues}
	return &source{walker: w}, nil
}

func (r *run) prepareVaultwarden(staging string, v *jobspec.VaultwardenSource) (*source, error) {
	dataDir := filepath.Clean(v.DataDir)
	fi, err := os.Stat(dataDir)
	if err != nil || !fi.IsDir() {
		if err == nil {
			err = fmt.Errorf("%s is not a directory", dataDir)
		}
		return nil, newErr(CodeSourceIO, KindSource, "Set data_dir to the host path of Vaultwarden's data directory.",
			fmt.Errorf("vaultwarden data_dir: %w", err))
	}
	dst := filepath.Join(staging, "source", VaultwardenDBName)
	if _, err := r.snapshotDB(filepath.Join(dataDir, VaultwardenDBName), dst); err != nil {
		return nil, err
	}
	r.issues = newFSIssues(jobspec.ErrorFailFast)
	r.cons = newConsistency()
	r.summary.Vaultwarden = &VaultwardenSummary{DataDir: v.DataDir, DB: VaultwardenDBName, Consistency: r.cons}
	w := &walker{roots: []walkRoot{{fsPath: dataDir}}, symlinks: jobspec.SymlinkKeep, issues: r.issues, cons: r.cons, skipTop: vaultwardenSkip}
	dbfi, err := os.Lstat(dst)
	if err != nil {
		return nil, newErr(CodeStagingIO, KindIO, "Check the data directory.", fmt.Errorf("stat database snapshot: %w", err))
	}
	return &source{walker: w, extra: []item{{fsPath: dst, arch: VaultwardenDBName, info: dbfi}}}, nil
}

func (r *run) snapshotDB(src, dst string) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return 0, newErr(CodeStagingIO, KindIO, "Check the data directory.", fmt.Errorf("create source staging: %w", err))
	}
	if err := SnapshotSQLite(r.ctx, src, dst); err != nil {
		if r.ctx.Err() != nil {
			return 0, context.Cause(r.ctx)
		}
		return 0, newErr(CodeSQLiteSnapshot, KindSource, "The database could not be copied; check the path and permissions.", err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return 0, newErr(CodeStagingIO, KindIO, "Check the data directory.", fmt.Errorf("stat database snapshot: %w", err))
	}
	return fi.Size(), nil
}
