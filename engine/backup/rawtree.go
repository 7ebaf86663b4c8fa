package backup

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/targets"
)

// DefaultRawTreeConcurrency is how many data/ files a raw_tree_v1 run uploads at once when the
// job sets no pipeline.webdav.raw_tree_direct.limits.concurrency.
const DefaultRawTreeConcurrency = 4

// localRunDir is implemented by targets whose run directory is a directory of this node
// (localdir.Target): a raw tree is then written straight into it, once, instead of staged and
// copied.
type localRunDir interface {
	LocalRunDir(run targets.RunRef) (string, error)
}

// executeRawTree runs the raw_tree_v1 pipeline (backup.md §6): every selected file is copied to
// data/<archive path> (hashed while copied), directories and symlinks are index records only,
// then entries.jsonl.zst, manifest.json, the data/ files and, last, complete.json are stored.
func (r *run) executeRawTree(staging string, src *source, policy string, threshold int64) error {
	spec := r.req.Spec
	r.summary.ArtifactFormat = format.FormatRawTreeV1

	// data/ goes straight into a local target's run directory unless the consistency policy
	// may still refuse the upload after the walk (then nothing may reach the target first).
	dataRoot, direct := filepath.Join(staging, targets.DataDir), false
	if lr, ok := r.req.Target.(localRunDir); ok {
		if policy == jobspec.ConsistencyFail {
			r.emit(LevelInfo, "direct_data_path_unavailable", "raw tree staged first: the consistency policy may refuse the upload",
				map[string]any{"reason": "consistency_fail_policy"})
		} else if dir, err := lr.LocalRunDir(r.ref); err != nil {
			r.emit(LevelWarn, "direct_data_path_unavailable", "raw tree staged first: the target's run directory is not usable",
				map[string]any{"reason": "run_dir_unavailable", "error": err.Error()})
		} else {
			dataRoot, direct = filepath.Join(dir, targets.DataDir), true
			r.emit(LevelInfo, "direct_data_path_ready", "raw tree files are written straight into the target directory",
				map[string]any{"path": dataRoot})
		}
	}
	if err := mkdirNoFollow(dataRoot); err != nil {
		return newErr(CodeStagingIO, KindIO, "Check the data directory and the target directory.", err)
	}

	r.req.Progress.Stage("packaging", r.total)
	index, err := newIndexWriter(filepath.Join(staging, targets.EntriesName))
	if err != nil {
		return newErr(CodeStagingIO, KindIO, "Check the data directory.", err)
	}
	defer index.close()
	w := &rawWriter{root: dataRoot, direct: direct, index: index, issues: r.issues, cons: r.cons,
		buf: make([]byte, copyChunk), hasher: blake3.New(), dirs: map[string]bool{},
		onDone: func(u progress.Units) { r.req.Progress.Set(u) }}
	if src.hardlinkKeep {
		w.groups = map[[2]uint64]string{}
	}
	if err := src.walker.walk(r.ctx, func(it item) error { return w.add(r.ctx, it) }); err != nil {
		return err
	}
	for _, it := range src.extra {
		if err := w.add(r.ctx, it); err != nil {
			return err
		}
	}
	if err := index.close(); err != nil {
		return newErr(CodeStagingIO, KindIO, "Check the data directory.", err)
	}
	r.summary.EntriesCount = index.count
	r.summary.Metrics.SourceTotal = r.total
	if err := r.reportIssues(policy, threshold); err != nil {
		return err
	}

	manifest := format.Manifest{
		FormatVersion: format.FormatVersion, JobID: r.req.JobID, RunID: r.req.RunID,
		StartedAt: rfc3339(r.req.StartedAt), EndedAt: rfc3339(r.req.Clock.Now()),
		Pipeline: format.Pipeline{Format: format.FormatRawTreeV1, Tar: "none", Compression: "none",
			Encryption: format.EncryptionNone, SplitBytes: 0},
		EntryIndex: format.EntryIndex{Name: targets.EntriesName, Count: index.count},
	}
	mbytes, err := manifest.Encode()
	if err != nil {
		return err
	}
	indexPath := filepath.Join(staging, targets.EntriesName)
	ifi, err := os.Stat(indexPath)
	if err != nil {
		return newErr(CodeStagingIO, KindIO, "Check the data directory.", fmt.Errorf("stat entries index: %w", err))
	}
	transfer := ifi.Size() + int64(len(mbytes)) + int64(len(completeBody))
	if !direct {
		transfer += w.dataBytes
	}
	r.summary.Metrics.TransferTotalBytes = transfer
	r.req.Progress.Stage("upload", &progress.Units{Bytes: uint64(transfer)})
	r.emit(LevelInfo, "upload", "uploading", map[string]any{"parts": 0, "data_files": w.dataFiles,
		"transfer_total_bytes": transfer, "data_in_place": direct})
	var done int64
	r.uploadProgress(done, transfer)
	if err := r.putIndexAndManifest(indexPath, ifi.Size(), mbytes, &done, transfer); err != nil {
		return err
	}
	if !direct {
		conc := DefaultRawTreeConcurrency
		if l := spec.Pipeline.WebDAV.RawTreeDirect.Limits; l != nil && l.Concurrency > 0 {
			conc = l.Concurrency
		}
		err := r.uploadDataTree(dataRoot, conc, func(n int64) {
			done += n
			r.uploadProgress(done, transfer)
		})
		if err != nil {
			return err
		}
	}
	return r.complete(transfer)
}

// uploadDataTree stores every file below the staged data root as data/<relative path>, conc at
// a time. The first failure cancels the rest and is returned; onBytes is called (serially)
// after each stored file.
func (r *run) uploadDataTree(root string, conc int, onBytes func(int64)) error {
	type job struct {
		name, path string
		size       int64
	}
	ctx, cancel := context.WithCancelCause(r.ctx)
	defer cancel(nil)
	jobs := make(chan job)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel(err)
		}
		mu.Unlock()
	}
	for range max(conc, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				if err := putFile(ctx, r.req.Target, r.ref, j.name, j.path, j.size); err != nil {
					fail(err)
					continue
				}
				_ = os.Remove(j.path) // staging shrinks as the upload goes on
				mu.Lock()
				onBytes(j.size)
				mu.Unlock()
			}
		}()
	}
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("staged %s is not a regular file", p)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		select {
		case jobs <- job{name: targets.DataName(filepath.ToSlash(rel)), path: p, size: fi.Size()}:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if walkErr != nil {
		if r.ctx.Err() != nil {
			return context.Cause(r.ctx)
		}
		return newErr(CodeStagingIO, KindIO, "Check the data directory.", fmt.Errorf("list staged data: %w", walkErr))
	}
	return nil
}

// rawWriter turns walked items into data/ files and index records.
type rawWriter struct {
	root   string // data/ (staging or the local target's run directory)
	direct bool   // root is on the target: files are synced, since nothing copies them later
	index  *indexWriter
	issues *fsIssues
	cons   *consistency
	groups map[[2]uint64]string // (dev, ino) → hardlink_group; nil unless hardlink_policy keep
	dirs   map[string]bool      // directories below root already made
	buf    []byte
	hasher *blake3.Hasher
	done   progress.Units
	onDone func(progress.Units)

	dataFiles int64
	dataBytes int64
}

func (w *rawWriter) progress() {
	if w.onDone != nil {
		w.onDone(w.done)
	}
}

// meta fills the per-entry metadata of backup.md §6 from the walk's stat.
func rawMeta(e *format.Entry, fi fs.FileInfo, xattrs map[string]string) {
	mt := fi.ModTime().Unix()
	e.Mtime = &mt
	if id := statID(fi); id.HasID {
		e.Mode, e.UID, e.GID = &id.Mode, &id.UID, &id.GID
	}
	if len(xattrs) > 0 {
		e.Xattrs = xattrs
	}
}

func (w *rawWriter) add(ctx context.Context, it item) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	mode := it.info.Mode()
	switch {
	case mode.IsDir():
		e := format.Entry{Path: it.arch, Kind: format.KindDir}
		rawMeta(&e, it.info, readXattrs(it.fsPath, it.follow))
		w.done.Dirs++
		w.progress()
		return w.index.add(e)
	case mode&fs.ModeSymlink != 0:
		target, err := readLink(it.fsPath)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				vanished(w.issues, w.cons, it.arch, it.info, err, msgVanished)
				return nil
			}
			return w.issues.fail(it.arch, fmt.Errorf("read symlink: %w", err))
		}
		e := format.Entry{Path: it.arch, Kind: format.KindSymlink, SymlinkTarget: &target}
		rawMeta(&e, it.info, readXattrs(it.fsPath, false))
		w.done.Files++
		w.progress()
		return w.index.add(e)
	case mode.IsRegular():
		return w.addFile(ctx, it)
	}
	return nil
}

func (w *rawWriter) addFile(ctx context.Context, it item) error {
	name := targets.DataName(it.arch)
	if err := targets.ValidateName(name); err != nil {
		// A name no target can hold as data/<path> (a control character or a backslash in it).
		return w.issues.fail(it.arch, fmt.Errorf("cannot be stored in a raw tree: %w", err))
	}
	// By path, not relative to the listed directory (it.at): the upload may outlive emit.
	f, fi, err := openRegular(item{fsPath: it.fsPath, follow: it.follow})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			vanished(w.issues, w.cons, it.arch, it.info, err, msgVanished)
			return nil
		}
		return w.issues.fail(it.arch, fmt.Errorf("open: %w", err))
	}
	defer f.Close()
	before := statID(fi)
	size := fi.Size()
	dst, err := w.create(it.arch)
	if err != nil {
		return newErr(CodeStagingIO, KindIO, "Check free space and permissions of the data directory and the target.",
			fmt.Errorf("create data/%s: %w", it.arch, err))
	}
	keep := false
	defer func() {
		if dst != nil {
			dst.Close()
		}
		if !keep {
			os.Remove(filepath.Join(w.root, filepath.FromSlash(it.arch)))
		}
	}()
	h := w.hasher
	h.Reset()
	copied, readErr, err := copyHashed(ctx, it, f, dst, h, w.buf, size, func(m int) {
		w.done.Bytes += uint64(m)
		w.progress()
	}, func(werr error) error {
		return newErr(CodeStagingIO, KindIO, "Check free space of the data directory and the target.",
			fmt.Errorf("write data/%s: %w", it.arch, werr))
	})
	if err != nil {
		return err
	}
	obs := observe(it, f, before, size, readErr)
	if copied < size && readErr == nil {
		// Unlike a tar entry, a raw file cannot be padded: the copy must have the size the
		// index records, or the file is left out.
		readErr = fmt.Errorf("file shrank while it was read: copied %d of %d bytes", copied, size)
	}
	w.cons.apply(obs)
	if readErr != nil {
		return w.issues.fail(it.arch, fmt.Errorf("read: %w", readErr))
	}
	if w.direct {
		if err := dst.Sync(); err != nil {
			return newErr(CodeStagingIO, KindIO, "Check the target directory.", fmt.Errorf("fsync data/%s: %w", it.arch, err))
		}
	}
	cerr := dst.Close()
	dst = nil
	if cerr != nil {
		return newErr(CodeStagingIO, KindIO, "Check free space of the data directory and the target.",
			fmt.Errorf("close data/%s: %w", it.arch, cerr))
	}
	keep = true
	hash := hex.EncodeToString(h.Sum(nil))
	e := format.FileEntry(it.arch, size, hash)
	rawMeta(&e, fi, readXattrs(it.fsPath, it.follow))
	if w.groups != nil && !it.follow && before.HasID && before.Nlink > 1 {
		key := [2]uint64{before.Dev, before.Ino}
		g, ok := w.groups[key]
		if !ok {
			g = strconv.FormatUint(before.Dev, 10) + ":" + strconv.FormatUint(before.Ino, 10)
			w.groups[key] = g
		}
		e.HardlinkGroup = &g
	}
	w.done.Files++
	w.dataFiles++
	w.dataBytes += size
	w.progress()
	return w.index.add(e)
}

// create opens root/<arch> for writing, making its parent directories.
func (w *rawWriter) create(arch string) (*os.File, error) {
	rel := filepath.FromSlash(arch)
	if dir := filepath.Dir(rel); dir != "." && !w.dirs[dir] {
		if err := mkdirAllNoFollow(w.root, dir); err != nil {
			return nil, err
		}
		w.dirs[dir] = true
	}
	return os.OpenFile(filepath.Join(w.root, rel), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
}

// mkdirNoFollow makes dir (its parent must exist) unless it is already a real directory.
func mkdirNoFollow(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// mkdirAllNoFollow makes root/rel level by level; a symlink or file on the way is an error, so
// nothing found in the data directory (a local target's, say) redirects a write.
func mkdirAllNoFollow(root, rel string) error {
	cur := root
	for _, s := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, s)
		if err := mkdirNoFollow(cur); err != nil {
			return err
		}
	}
	return nil
}
