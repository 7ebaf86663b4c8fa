package restore

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/targets"
)

// restoreRawTree restores a raw_tree_v1 snapshot (backup.md §9): the index is downloaded and read
// in order; each file's body is fetched from data/<path> and must have the size and BLAKE3 the
// index records (a *PartError naming data/<path> otherwise). Semantics differ from archive_v1
// where the spec says so: directories merge; a non-directory where a directory goes is replaced
// (overwrite), blocks that subtree (skip) or aborts (fail); hard-link groups are re-linked to
// the group's first restored file; mode, owner, extended attributes and mtime are applied best
// effort. All of the archive restore's safety holds, through the same descriptor-relative
// operations: index paths that are absolute, hold "..", or lead through a symlink are refused.
// stageRawIndex makes req.StagingDir and downloads the snapshot's index into it, returning its
// path. On success the caller removes the staging directory; on failure it is removed here if
// it was made.
func stageRawIndex(ctx context.Context, req Request, run targets.RunRef) (string, error) {
	if err := os.MkdirAll(req.StagingDir, 0o700); err != nil {
		return "", &Error{Code: CodeIO, Err: fmt.Errorf("create staging: %w", err)}
	}
	indexPath := filepath.Join(req.StagingDir, targets.EntriesName)
	if err := FetchIndex(ctx, req.Target, run, indexPath); err != nil {
		os.RemoveAll(req.StagingDir)
		if ctx.Err() != nil {
			return "", &Error{Code: CodeCanceled, Err: ctx.Err()}
		}
		return "", &Error{Code: CodePart, Err: &PartError{Part: targets.EntriesName, Reason: "read_error", Err: err}}
	}
	return indexPath, nil
}

func restoreRawTree(ctx context.Context, req Request, run targets.RunRef, m *format.Manifest) (Result, error) {
	var res Result
	policy, sel, err := options(req)
	if err != nil {
		return res, err
	}
	x, err := openExtractor(req.Destination, &req, policy, sel, &res)
	if err != nil {
		return res, err
	}
	defer x.close()
	indexPath, err := stageRawIndex(ctx, req, run)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(req.StagingDir)
	req.Progress.Stage("restore", &progress.Units{Files: uint64(max(m.EntryIndex.Count, 0))})
	rt := &rawRestorer{
		x:     x,
		t:     req.Target,
		run:   run,
		first: map[string]string{},
		made:  map[string]bool{},
	}
	err = scanIndex(indexPath, func(e format.Entry) error {
		if err := ctx.Err(); err != nil {
			return &Error{Code: CodeCanceled, Err: err}
		}
		res.EntriesSeen++
		if err := rt.entry(ctx, e); err != nil {
			return err
		}
		req.Progress.Set(progress.Units{Files: uint64(res.Written), Bytes: uint64(res.Bytes)})
		return nil
	})
	err = endRawRestore(req, &res, err, rt.finishDirs)
	return res, err
}

// endRawRestore ends both raw restores once the index was scanned (scanErr): a scan error is
// returned (as an archive error unless it is already an *Error), else finish (the writer's last
// step) runs, the progress is brought up to date, and refused entries fail the restore.
func endRawRestore(req Request, res *Result, scanErr error, finish func() error) error {
	if scanErr != nil {
		var re *Error
		if errors.As(scanErr, &re) {
			return scanErr
		}
		return &Error{Code: CodeArchive, Err: scanErr}
	}
	if err := finish(); err != nil {
		return err
	}
	req.Progress.Set(progress.Units{Files: uint64(res.Written), Bytes: uint64(res.Bytes)})
	if res.Refused > 0 {
		emit(req.Events, "error", "unsafe_entries", fmt.Sprintf("%d unsafe index entries were refused", res.Refused),
			map[string]any{"refused": res.Refused, "sample": res.RefusedSample})
		return &Error{Code: CodeUnsafeEntries, Err: fmt.Errorf("%d index entries were refused as unsafe (first: %s: %s)",
			res.Refused, res.RefusedSample[0].Path, res.RefusedSample[0].Reason)}
	}
	return nil
}

type rawRestorer struct {
	x   *extractor
	t   targets.Target
	run targets.RunRef
	// first maps a hardlink_group to the path its first restored file was written at.
	first map[string]string
	// blocked are directories whose subtree is skipped: something that is not a directory
	// stands where they go and the policy is skip.
	blocked []string
	// made are directories known to exist as directories (created or merged) below dest.
	made map[string]bool
	dirs []rawDir
}

type rawDir struct {
	rel string
	e   format.Entry
}

func (rt *rawRestorer) isBlocked(rel string) bool {
	for _, b := range rt.blocked {
		if rel == b || strings.HasPrefix(rel, b+"/") {
			return true
		}
	}
	return false
}

func (rt *rawRestorer) entry(ctx context.Context, e format.Entry) error {
	x := rt.x
	rel, why := cleanName(e.Path)
	if why != "" {
		x.refuse(e.Path, why)
		return nil
	}
	if x.sel != nil && !x.sel.match(rel) {
		return nil
	}
	if rt.isBlocked(rel) {
		x.res.Skipped++
		return nil
	}
	h, why := rawHeader(rel, e)
	if why != "" {
		x.refuse(rel, why)
		return nil
	}
	if ok, err := rt.parents(rel); err != nil || !ok {
		return err
	}
	switch e.Kind {
	case format.KindDir:
		return rt.dir(rel, e)
	case format.KindFile:
		return rt.file(ctx, rel, e)
	}
	before := x.res.Written
	if err := x.symlink(rel, h); err != nil {
		return err
	}
	if x.res.Written > before {
		rt.linkMeta(rel, e)
	}
	return nil
}

// parents makes sure every ancestor of rel is a directory, applying the conflict policy to a
// file (or anything else but a symlink) standing in the way: overwrite replaces it by a
// directory, skip skips the subtree, fail aborts. A symlink on the way is refused whatever the
// policy: it may point anywhere. ok is false when the entry is not to be restored.
func (rt *rawRestorer) parents(rel string) (ok bool, err error) {
	x := rt.x
	segs := strings.Split(rel, "/")
	for i := 1; i < len(segs); i++ {
		p := strings.Join(segs[:i], "/")
		if rt.made[p] {
			continue
		}
		dirfd, base, why, err := x.d.parent(p, true)
		if err != nil {
			return false, &Error{Code: CodeIO, Err: fmt.Errorf("%s: %w", rel, err)}
		}
		if why != "" {
			x.refuse(rel, why)
			return false, nil
		}
		mode, exists, err := lstatAt(dirfd, base)
		if err != nil {
			return false, &Error{Code: CodeIO, Err: fmt.Errorf("inspect %s: %w", p, err)}
		}
		switch {
		case !exists:
			if err := unix.Mkdirat(dirfd, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				return false, &Error{Code: CodeIO, Err: fmt.Errorf("create directory %s: %w", p, err)}
			}
		case mode == unix.S_IFDIR:
		case mode == unix.S_IFLNK:
			x.refuse(rel, "parent "+p+" is a symlink")
			return false, nil
		default:
			switch x.policy {
			case ConflictSkip:
				rt.blocked = append(rt.blocked, p)
				x.res.Skipped++
				return false, nil
			case ConflictFail:
				return false, &Error{Code: CodeConflict, Err: fmt.Errorf("%s already exists and is not a directory (conflict policy fail)", p)}
			}
			if err := x.d.remove(dirfd, base, p, false); err != nil {
				return false, &Error{Code: CodeIO, Err: fmt.Errorf("remove %s: %w", p, err)}
			}
			if err := unix.Mkdirat(dirfd, base, 0o755); err != nil {
				return false, &Error{Code: CodeIO, Err: fmt.Errorf("create directory %s: %w", p, err)}
			}
		}
		rt.made[p] = true
	}
	return true, nil
}

func (rt *rawRestorer) dir(rel string, e format.Entry) error {
	x := rt.x
	dirfd, base, ok, err := x.at(rel)
	if err != nil || !ok {
		return err
	}
	mode, exists, err := lstatAt(dirfd, base)
	if err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("inspect %s: %w", rel, err)}
	}
	switch {
	case exists && mode == unix.S_IFDIR:
		// Merged, whatever the policy: the directory's other content stays.
	case exists && mode == unix.S_IFLNK:
		x.refuse(rel, "is a symlink where the snapshot has a directory")
		return nil
	case exists:
		switch x.policy {
		case ConflictSkip:
			rt.blocked = append(rt.blocked, rel)
			x.res.Skipped++
			return nil
		case ConflictFail:
			return &Error{Code: CodeConflict, Err: fmt.Errorf("%s already exists and is not a directory (conflict policy fail)", rel)}
		}
		if err := x.makeDir(dirfd, base, rel, true); err != nil {
			return err
		}
	default:
		if err := x.makeDir(dirfd, base, rel, false); err != nil {
			return err
		}
	}
	rt.made[rel] = true
	rt.dirs = append(rt.dirs, rawDir{rel: rel, e: e})
	x.res.Written++
	return nil
}

func (rt *rawRestorer) file(ctx context.Context, rel string, e format.Entry) error {
	x := rt.x
	if e.HardlinkGroup != nil {
		if first, ok := rt.first[*e.HardlinkGroup]; ok && first != rel {
			before := x.res.Written
			if err := x.hardlink(rel, &tar.Header{Linkname: first}); err != nil {
				return err
			}
			if x.res.Written > before {
				delete(rt.made, rel)
			}
			return nil
		}
	}
	dirfd, base, ok, err := x.at(rel)
	if err != nil || !ok {
		return err
	}
	if ok, _, err := x.conflict(rel, dirfd, base); err != nil || !ok {
		return err
	}
	delete(rt.made, rel) // an empty directory there may have been removed
	tmp, tmpName, err := createTemp(dirfd)
	if err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("create %s: %w", rel, err)}
	}
	placed := false
	defer func() {
		if !placed {
			tmp.Close()
			unix.Unlinkat(dirfd, tmpName, 0)
		}
	}()
	n, err := rt.fetch(ctx, rel, e, tmp)
	if err != nil {
		return err
	}
	fd := int(tmp.Fd())
	// Owner first: chown clears set-id bits, which chmod then sets as wanted. Both, and the
	// attributes, are best effort: a restore by a user who may not give files away still
	// restores the data.
	if e.UID != nil && e.GID != nil {
		_ = unix.Fchown(fd, int(*e.UID), int(*e.GID))
	}
	if e.Mode != nil {
		_ = unix.Fchmod(fd, unixMode(int64(*e.Mode), x.keepSpecial))
	} else {
		_ = unix.Fchmod(fd, 0o644)
	}
	rt.setXattrs(fd, e.Xattrs)
	if err := tmp.Close(); err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("write %s: %w", rel, err)}
	}
	if e.Mtime != nil {
		_ = setTimesAt(dirfd, tmpName, time.Unix(*e.Mtime, 0))
	}
	if err := unix.Renameat(dirfd, tmpName, dirfd, base); err != nil {
		placed = true // closed already; the deferred cleanup must not close it twice
		unix.Unlinkat(dirfd, tmpName, 0)
		return &Error{Code: CodeIO, Err: fmt.Errorf("place %s: %w", rel, err)}
	}
	placed = true
	x.res.Written++
	x.res.Bytes += n
	if e.HardlinkGroup != nil {
		if _, ok := rt.first[*e.HardlinkGroup]; !ok {
			rt.first[*e.HardlinkGroup] = rel
		}
	}
	return nil
}

// fetch streams data/<rel> into dst, checking it has exactly e.Size bytes and, when the index
// has one, its BLAKE3 hash (dataReader). Nothing of a file that fails the check is kept.
func (rt *rawRestorer) fetch(ctx context.Context, rel string, e format.Entry, dst io.Writer) (int64, error) {
	dr := newDataReader(ctx, rt.t, rt.run, rel, e)
	defer dr.Close()
	// dst wrapped so that the copy goes through buf, not through a ReaderFrom of its own.
	n, err := io.CopyBuffer(struct{ io.Writer }{dst}, dr, rt.x.buf)
	if err != nil {
		var re *Error
		if errors.As(err, &re) {
			return n, re
		}
		return n, &Error{Code: CodeIO, Err: fmt.Errorf("write %s: %w", rel, err)}
	}
	return n, nil
}

// setXattrs applies extended attributes best effort. Only user.* and POSIX ACLs are restored
// unless special bits are kept: security.* (file capabilities) and trusted.* would grant
// privileges a snapshot must not plant, like setuid bits.
func (rt *rawRestorer) setXattrs(fd int, xs map[string]string) {
	for name, v := range xs {
		if !rt.x.keepSpecial && !strings.HasPrefix(name, "user.") && !strings.HasPrefix(name, "system.posix_acl_") {
			continue
		}
		val, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			continue
		}
		_ = unix.Fsetxattr(fd, name, val, 0)
	}
}

// linkMeta applies a symlink's owner and mtime, best effort, to the link itself.
func (rt *rawRestorer) linkMeta(rel string, e format.Entry) {
	dirfd, base, why, err := rt.x.d.parent(rel, false)
	if err != nil || why != "" {
		return
	}
	if e.UID != nil && e.GID != nil {
		_ = unix.Fchownat(dirfd, base, int(*e.UID), int(*e.GID), unix.AT_SYMLINK_NOFOLLOW)
	}
	if e.Mtime != nil {
		_ = setTimesAt(dirfd, base, time.Unix(*e.Mtime, 0))
	}
}

// finishDirs applies directory metadata deepest first, best effort, through a descriptor of the
// directory opened without following symlinks. A directory a later entry replaced is reported,
// never touched through the replacement.
func (rt *rawRestorer) finishDirs() error {
	slices.SortStableFunc(rt.dirs, func(a, b rawDir) int { return len(b.rel) - len(a.rel) })
	for _, dm := range rt.dirs {
		dirfd, base, why, err := rt.x.d.parent(dm.rel, false)
		if errors.Is(err, errMissing) {
			why = "is gone"
		} else if err != nil {
			return &Error{Code: CodeIO, Err: fmt.Errorf("finish directory %s: %w", dm.rel, err)}
		}
		fd := -1
		if why == "" {
			fd, err = openDirAt(dirfd, base)
			if err != nil {
				why, err = classifyAt(dirfd, base, err)
				if errors.Is(err, errMissing) {
					why = "is gone"
				} else if why == "" {
					continue // a directory we may not open: leave its metadata
				}
			}
		}
		if why != "" {
			rt.x.refuse(dm.rel, why+" now (a later entry replaced the directory); its metadata was not applied")
			continue
		}
		e := dm.e
		if e.UID != nil && e.GID != nil {
			_ = unix.Fchown(fd, int(*e.UID), int(*e.GID))
		}
		if e.Mode != nil {
			_ = unix.Fchmod(fd, unixMode(int64(*e.Mode), rt.x.keepSpecial))
		}
		rt.setXattrs(fd, e.Xattrs)
		unix.Close(fd)
		if e.Mtime != nil {
			_ = setTimesAt(dirfd, base, time.Unix(*e.Mtime, 0))
		}
	}
	return nil
}
