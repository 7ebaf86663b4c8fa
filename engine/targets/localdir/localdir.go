// Package localdir stores backup runs in a directory on the node that runs the job:
// <base_dir>/<job_id>/<run_id>/<name>.
//
// Files are written as <name>.partial, fsynced, checked for size and renamed over <name>, so a
// crash never leaves a short file under the final name. Directories are created 0700 and files
// 0600: backups hold private data whatever the process umask allows.
package localdir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/targets"
)

const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600

	// copyChunk is how much is copied between two cancellation checks. Each chunk is one
	// io.CopyN, which lets *os.File sources go through copy_file_range/sendfile.
	copyChunk = 8 << 20
)

// Target is a local directory target. It is safe for concurrent use.
type Target struct {
	base string
	log  zerolog.Logger

	// writing serialises Puts of the same file within this process: both would share one
	// <name>.partial. Different names proceed in parallel.
	mu      sync.Mutex
	writing map[string]*sync.Mutex
	users   map[string]int
}

// Option configures a Target.
type Option func(*Target)

// WithLogger sets the logger; the default discards.
func WithLogger(l zerolog.Logger) Option {
	return func(t *Target) { t.log = l }
}

// New returns a target rooted at baseDir, which must be an absolute path. The directory itself
// is created on the first Put if it is missing.
func New(baseDir string, opts ...Option) (*Target, error) {
	if strings.TrimSpace(baseDir) == "" {
		return nil, configErr("new local_dir target", errors.New("base_dir is required"))
	}
	if !filepath.IsAbs(baseDir) {
		return nil, configErr("new local_dir target", fmt.Errorf("base_dir %q must be an absolute path", baseDir))
	}
	t := &Target{
		base:    filepath.Clean(baseDir),
		log:     zerolog.Nop(),
		writing: map[string]*sync.Mutex{},
		users:   map[string]int{},
	}
	for _, o := range opts {
		o(t)
	}
	t.log = t.log.With().Str("component", "target_local_dir").Logger()
	return t, nil
}

// BaseDir is the cleaned base directory.
func (t *Target) BaseDir() string { return t.base }

func (t *Target) Type() string { return Type }

// Location is the run directory's path.
func (t *Target) Location(run targets.RunRef) string {
	return filepath.Join(t.base, run.JobID, run.RunID)
}

// RunDir is the run directory's path after validating the ids, for callers that write into it
// directly (raw_tree_v1 links its staging data/ there).
func (t *Target) RunDir(run targets.RunRef) (string, error) {
	if err := targets.ValidateRun(run); err != nil {
		return "", configErr("run dir", err)
	}
	return t.Location(run), nil
}

// LocalRunDir creates the run directory (and the base and job directories) if needed and
// returns its path, for a raw_tree_v1 backup that writes its data/ straight into it instead of
// staging it first.
func (t *Target) LocalRunDir(run targets.RunRef) (string, error) {
	if err := targets.ValidateRun(run); err != nil {
		return "", configErr("local run dir", err)
	}
	dir, err := t.ensureRunDir(run)
	if err != nil {
		return "", classify("local run dir", err)
	}
	return dir, nil
}

func (t *Target) Redacted() targets.Redacted {
	return Redact(t.base)
}

// Put copies body to run/name unless a file of that name and size is already there.
func (t *Target) Put(ctx context.Context, run targets.RunRef, name string, body io.ReadSeeker, size int64) (bool, error) {
	op := "put " + name
	if err := checkArgs(run, name); err != nil {
		return false, configErr(op, err)
	}
	if size < 0 {
		return false, configErr(op, fmt.Errorf("negative size %d", size))
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	dir, err := t.ensureRunDir(run)
	if err != nil {
		return false, classify(op, err)
	}
	dst, tmp, err := t.placeFor(dir, name)
	if err != nil {
		return false, classify(op, err)
	}

	unlock := t.lockFile(dst)
	defer unlock()

	if !targets.AlwaysRewrite(name) {
		if fi, err := os.Lstat(dst); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
			return true, nil
		}
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return false, newErr(targets.KindIO, op, fmt.Errorf("rewind body: %w", err))
	}
	if err := writeFile(ctx, dst, tmp, body, size); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return false, fmt.Errorf("%s: %w", op, err)
		}
		var te *targets.Error
		if errors.As(err, &te) {
			te.Op = op
			return false, te
		}
		return false, classify(op, err)
	}
	return false, nil
}

// placeFor returns where run/name goes below the run directory dir and the temporary name it is
// written through. A raw_tree_v1 body (data/<path>) gets its parent directories, none of which
// may be a symlink, and a temporary name of its own: <name>.partial could be another file of
// the source tree.
func (t *Target) placeFor(dir, name string) (dst, tmp string, err error) {
	if !strings.HasPrefix(name, targets.DataDir+"/") {
		dst = filepath.Join(dir, name)
		return dst, dst + targets.PartialSuffix, nil
	}
	parent, err := dataParent(dir, name, true)
	if err != nil {
		return "", "", err
	}
	base := name[strings.LastIndexByte(name, '/')+1:]
	return filepath.Join(parent, base), filepath.Join(parent, ".bastion-put-"+base[:min(len(base), 64)]+"-"+strconv.FormatUint(rand.Uint64(), 36)), nil
}

// dataParent returns the directory that holds the data/<path> file name below the run directory
// dir, checking each level with Lstat: a symlink or a non-directory on the way is refused, so
// nothing placed in the target directory can redirect a read or write out of it. With create,
// missing levels are made.
func dataParent(dir, name string, create bool) (string, error) {
	segs := strings.Split(name, "/")
	cur := dir
	for _, s := range segs[:len(segs)-1] {
		cur = filepath.Join(cur, s)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) && create {
			if err := os.Mkdir(cur, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
				return "", fmt.Errorf("create %s: %w", cur, err)
			}
			fi, err = os.Lstat(cur)
		}
		if err != nil {
			return "", fmt.Errorf("stat %s: %w", cur, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("%s %w", cur, errSymlink)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("%s is not a directory: %w", cur, targets.ErrInvalidPath)
		}
	}
	return cur, nil
}

// pathFor is where run/name is read from below the run directory dir.
func pathFor(dir, name string) (string, error) {
	if !strings.HasPrefix(name, targets.DataDir+"/") {
		return filepath.Join(dir, name), nil
	}
	parent, err := dataParent(dir, name, false)
	if err != nil {
		return "", err
	}
	return filepath.Join(parent, name[strings.LastIndexByte(name, '/')+1:]), nil
}

// writeFile writes exactly size bytes of body to dst through tmp.
func writeFile(ctx context.Context, dst, tmp string, body io.Reader, size int64) (err error) {
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, fileMode)
	if err != nil {
		return fmt.Errorf("create %s: %w", filepath.Base(tmp), err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.CopyN(f, body, min(size-done, copyChunk))
		done += n
		if errors.Is(err, io.EOF) {
			return newErr(targets.KindIntegrity, "", fmt.Errorf("body ended after %d of %d bytes", done, size))
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", filepath.Base(tmp), err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", filepath.Base(tmp), err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", filepath.Base(tmp), err)
	}
	if fi.Size() != size {
		return newErr(targets.KindIntegrity, "", fmt.Errorf("%s has %d bytes, want %d", filepath.Base(tmp), fi.Size(), size))
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("close %s: %w", filepath.Base(tmp), cerr)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("rename %s: %w", filepath.Base(tmp), err)
	}
	// The rename is durable only once the directory entry is.
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return err
	}
	return nil
}

// Size returns the size of run/name.
func (t *Target) Size(ctx context.Context, run targets.RunRef, name string) (int64, error) {
	op := "size " + name
	if err := checkArgs(run, name); err != nil {
		return 0, configErr(op, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	dir, err := t.runDir(run)
	if err != nil {
		return 0, classify(op, err)
	}
	p, err := pathFor(dir, name)
	if err != nil {
		return 0, classify(op, err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return 0, classify(op, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, configErr(op, fmt.Errorf("%s is not a regular file", name))
	}
	return fi.Size(), nil
}

// Open opens run/name for reading.
func (t *Target) Open(ctx context.Context, run targets.RunRef, name string) (io.ReadCloser, error) {
	op := "open " + name
	if err := checkArgs(run, name); err != nil {
		return nil, configErr(op, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	dir, err := t.runDir(run)
	if err != nil {
		return nil, classify(op, err)
	}
	p, err := pathFor(dir, name)
	if err != nil {
		return nil, classify(op, err)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, classify(op, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a regular file", name)
		}
		return nil, configErr(op, err)
	}
	return f, nil
}

// CleanupRun removes an incomplete run directory that carries Bastion's markers.
func (t *Target) CleanupRun(ctx context.Context, run targets.RunRef) (targets.CleanupResult, error) {
	op := "cleanup run " + run.RunID
	if err := targets.ValidateRun(run); err != nil {
		return "", configErr(op, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	dir, err := t.runDir(run)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errSymlink) {
		// A symlink where a run directory should be is nothing this target wrote.
		return targets.CleanupSkipNotFound, nil
	}
	if err != nil {
		return "", classify(op, err)
	}
	m, err := scanMarkers(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return targets.CleanupSkipNotFound, nil
	}
	if err != nil {
		return "", classify(op, err)
	}
	if m.complete {
		return targets.CleanupSkipComplete, nil
	}
	if !m.bastion() {
		t.log.Info().Str("job_id", run.JobID).Str("run_id", run.RunID).
			Msg("run directory has no Bastion files; leaving it alone")
		return targets.CleanupSkipNotFound, nil
	}
	if err := t.removeRun(dir); err != nil {
		return "", classify(op, err)
	}
	return targets.CleanupDeleted, nil
}

// DeleteRun removes a run directory, complete or not. A directory that is not empty and holds
// none of Bastion's files is refused with a config error: the base directory is probably wrong.
func (t *Target) DeleteRun(ctx context.Context, run targets.RunRef) (targets.DeleteResult, error) {
	op := "delete run " + run.RunID
	if err := targets.ValidateRun(run); err != nil {
		return "", configErr(op, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	dir, err := t.runDir(run)
	if errors.Is(err, fs.ErrNotExist) {
		return targets.DeleteNotFound, nil
	}
	if errors.Is(err, errSymlink) {
		return "", configErr(op, err)
	}
	if err != nil {
		return "", classify(op, err)
	}
	m, err := scanMarkers(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return targets.DeleteNotFound, nil
	}
	if err != nil {
		return "", classify(op, err)
	}
	if !m.bastion() && !m.complete && !m.empty {
		return "", configErr(op, fmt.Errorf("%s holds no Bastion run files; refusing to delete it", dir))
	}
	if err := t.removeRun(dir); err != nil {
		return "", classify(op, err)
	}
	return targets.DeleteDeleted, nil
}

// removeRun deletes dir (os.RemoveAll unlinks symlinks inside it rather than following them),
// then the job directory if that left it empty.
func (t *Target) removeRun(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	// Fails harmlessly with ENOTEMPTY while other runs of the job remain.
	if err := os.Remove(filepath.Dir(dir)); err == nil {
		_ = syncDir(t.base)
	}
	return nil
}

type markers struct {
	complete, manifest, index, parts, partial, data, empty bool
}

// bastion reports a directory Bastion wrote. data/ counts: a raw_tree_v1 run on a local
// target writes its file bodies there before the index and manifest exist.
func (m markers) bastion() bool { return m.manifest || m.index || m.parts || m.partial || m.data }

func scanMarkers(dir string) (markers, error) {
	var m markers
	entries, err := os.ReadDir(dir)
	if err != nil {
		return m, fmt.Errorf("list %s: %w", dir, err)
	}
	m.empty = len(entries) == 0
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == targets.CompleteName:
			m.complete = true
		case n == targets.ManifestName:
			m.manifest = true
		case n == targets.EntriesName:
			m.index = true
		case strings.HasPrefix(n, "payload.part"):
			m.parts = true
		case strings.HasSuffix(n, targets.PartialSuffix):
			m.partial = true
		case n == targets.DataDir && e.IsDir():
			m.data = true
		}
	}
	return m, nil
}

var errSymlink = errors.New("is a symbolic link, not a directory")

// runDir returns the run directory after checking that neither it nor its job directory is a
// symlink (which could point out of the base) or a non-directory.
func (t *Target) runDir(run targets.RunRef) (string, error) {
	jobDir := filepath.Join(t.base, run.JobID)
	runDir := filepath.Join(jobDir, run.RunID)
	for _, p := range []string{jobDir, runDir} {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("stat %s: %w", p, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("%s %w", p, errSymlink)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("%s is not a directory: %w", p, targets.ErrInvalidPath)
		}
	}
	return runDir, nil
}

// ensureRunDir creates the base, job and run directories as needed.
func (t *Target) ensureRunDir(run targets.RunRef) (string, error) {
	dir, err := t.runDir(run)
	if err == nil {
		return dir, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(t.base, dirMode); err != nil {
		return "", fmt.Errorf("create base dir: %w", err)
	}
	for _, p := range []string{filepath.Join(t.base, run.JobID), t.Location(run)} {
		// Mkdir (not MkdirAll) so an existing symlink is never followed; EEXIST from a
		// concurrent Put is fine, runDir below re-checks what is there.
		if err := os.Mkdir(p, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("create %s: %w", p, err)
		}
	}
	if err := syncDir(filepath.Join(t.base, run.JobID)); err != nil {
		return "", err
	}
	if err := syncDir(t.base); err != nil {
		return "", err
	}
	return t.runDir(run)
}

func (t *Target) lockFile(path string) (unlock func()) {
	t.mu.Lock()
	m, ok := t.writing[path]
	if !ok {
		m = &sync.Mutex{}
		t.writing[path] = m
	}
	t.users[path]++
	t.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		t.mu.Lock()
		t.users[path]--
		if t.users[path] == 0 {
			delete(t.users, path)
			delete(t.writing, path)
		}
		t.mu.Unlock()
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s for fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

func checkArgs(run targets.RunRef, name string) error {
	if err := targets.ValidateRun(run); err != nil {
		return err
	}
	return targets.ValidateName(name)
}
