package restore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/targets"
)

// PartError says which part of a snapshot is missing, truncated or corrupted.
type PartError struct {
	Part   string
	Reason string // missing | size_mismatch | hash_mismatch | read_error
	Err    error
}

func (e *PartError) Error() string {
	msg := "part " + e.Part + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *PartError) Unwrap() error { return e.Err }

// fetchPart downloads one part into dir, checking its size and BLAKE3 hash, and returns the
// local path. Nothing from a part reaches the decoder before it was verified.
func fetchPart(ctx context.Context, t targets.Target, run targets.RunRef, p format.Part, dir string) (string, error) {
	rc, err := t.Open(ctx, run, p.Name)
	if err != nil {
		if errors.Is(err, targets.ErrNotExist) {
			return "", &PartError{Part: p.Name, Reason: "missing", Err: err}
		}
		return "", &PartError{Part: p.Name, Reason: "read_error", Err: err}
	}
	defer rc.Close()
	path := filepath.Join(dir, p.Name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("create staging copy of %s: %w", p.Name, err)
	}
	h := blake3.New()
	// Read one byte more than expected so an over-long part is noticed.
	n, err := io.Copy(io.MultiWriter(f, h), &ctxReader{ctx: ctx, r: io.LimitReader(rc, p.Size+1)})
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", &PartError{Part: p.Name, Reason: "read_error", Err: err}
	}
	if n != p.Size {
		os.Remove(path)
		return "", &PartError{Part: p.Name, Reason: "size_mismatch", Err: fmt.Errorf("got %d bytes, manifest says %d", n, p.Size)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); p.HashAlg != format.HashAlgBLAKE3 || got != p.Hash {
		os.Remove(path)
		return "", &PartError{Part: p.Name, Reason: "hash_mismatch", Err: fmt.Errorf("blake3 %s, manifest says %s", got, p.Hash)}
	}
	return path, nil
}

// localFiles is implemented by targets whose files sit in a local directory (localdir.Target):
// their parts are verified and decoded where they are instead of being copied to staging.
type localFiles interface {
	RunDir(run targets.RunRef) (string, error)
}

// fingerprint identifies the content of an open file well enough to notice a write: any write
// through the file system moves ctime (which user space cannot set) and usually mtime and size.
type fingerprint struct {
	dev, ino    uint64
	size        int64
	mtime, ctim syscall.Timespec
}

func fingerprintOf(f *os.File) (fingerprint, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fingerprint{}, err
	}
	return fingerprint{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctim: st.Ctim}, nil
}

// verifyInPlace checks a part of a local target where it lies: size, then BLAKE3 over the whole
// file, read through the descriptor that is then handed to the decoder. The file is re-checked
// (fstat) after hashing and again when the decoder reaches its end; a part written to meanwhile
// fails the restore (changed_during_restore). So no byte the hash did not cover is decoded
// unless a writer rewrote the file and also turned back its ctime, which only a clock change
// by root can do.
func verifyInPlace(ctx context.Context, dir string, p format.Part, buf []byte) (*os.File, fingerprint, error) {
	f, err := os.OpenFile(filepath.Join(dir, p.Name), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fingerprint{}, &PartError{Part: p.Name, Reason: "missing", Err: err}
		}
		return nil, fingerprint{}, &PartError{Part: p.Name, Reason: "read_error", Err: err}
	}
	fail := func(reason string, err error) (*os.File, fingerprint, error) {
		f.Close()
		if ctx.Err() != nil {
			return nil, fingerprint{}, ctx.Err()
		}
		return nil, fingerprint{}, &PartError{Part: p.Name, Reason: reason, Err: err}
	}
	before, err := fingerprintOf(f)
	if err != nil {
		return fail("read_error", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fail("read_error", fmt.Errorf("not a regular file"))
	}
	if before.size != p.Size {
		return fail("size_mismatch", fmt.Errorf("file has %d bytes, manifest says %d", before.size, p.Size))
	}
	h := blake3.New()
	n, err := io.CopyBuffer(h, &ctxReader{ctx: ctx, r: io.LimitReader(f, p.Size+1)}, buf)
	if err != nil {
		return fail("read_error", err)
	}
	if n != p.Size {
		return fail("size_mismatch", fmt.Errorf("read %d bytes, manifest says %d", n, p.Size))
	}
	if got := hex.EncodeToString(h.Sum(nil)); p.HashAlg != format.HashAlgBLAKE3 || got != p.Hash {
		return fail("hash_mismatch", fmt.Errorf("blake3 %s, manifest says %s", got, p.Hash))
	}
	if after, err := fingerprintOf(f); err != nil || after != before {
		return fail("changed_during_restore", errors.New("the file was written to while it was being verified"))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail("read_error", err)
	}
	return f, before, nil
}

// partStream concatenates verified parts. The next part is fetched (or, on a local target,
// verified in place) in the background while the current one is decoded, so at most two parts
// are staged, and none on a local target.
type partStream struct {
	ctx      context.Context
	t        targets.Target
	run      targets.RunRef
	parts    []format.Part
	dir      string // staging
	localDir string // the run directory of a local target, or ""
	onRead   func(n int64)

	// mu serialises Read, which the zstd decoder calls from its own goroutine, with Close.
	mu      sync.Mutex
	closed  bool
	next    int
	cur     *fetchResult
	pending chan fetchResult
	err     error
}

// fetchResult is a verified part ready to decode: a staged copy (path set, removed after use) or
// the target's own file (fp set, never removed).
type fetchResult struct {
	part format.Part
	f    *os.File
	path string
	fp   *fingerprint
	read int64
	err  error
}

func newPartStream(ctx context.Context, t targets.Target, run targets.RunRef, parts []format.Part, dir string, onRead func(int64)) *partStream {
	s := &partStream{ctx: ctx, t: t, run: run, parts: parts, dir: dir, onRead: onRead}
	if lf, ok := t.(localFiles); ok {
		if d, err := lf.RunDir(run); err == nil {
			s.localDir = d
		}
	}
	s.prefetch()
	return s
}

func (s *partStream) prefetch() {
	if s.next >= len(s.parts) {
		s.pending = nil
		return
	}
	p := s.parts[s.next]
	s.next++
	ch := make(chan fetchResult, 1)
	s.pending = ch
	go func() {
		if s.localDir != "" {
			f, fp, err := verifyInPlace(s.ctx, s.localDir, p, make([]byte, 1<<20))
			ch <- fetchResult{part: p, f: f, fp: &fp, err: err}
			return
		}
		path, err := fetchPart(s.ctx, s.t, s.run, p, s.dir)
		if err != nil {
			ch <- fetchResult{part: p, err: err}
			return
		}
		f, err := os.Open(path)
		if err != nil {
			os.Remove(path)
			ch <- fetchResult{part: p, err: fmt.Errorf("open staging part: %w", err)}
			return
		}
		ch <- fetchResult{part: p, f: f, path: path}
	}()
}

func (s *partStream) Read(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("read after close")
	}
	for {
		if s.err != nil {
			return 0, s.err
		}
		if s.cur == nil {
			if s.pending == nil {
				return 0, io.EOF
			}
			res := <-s.pending
			s.pending = nil
			if res.err != nil {
				s.err = res.err
				return 0, s.err
			}
			s.cur = &res
			s.prefetch()
		}
		n, err := s.cur.f.Read(b)
		if n > 0 {
			s.cur.read += int64(n)
			if s.onRead != nil {
				s.onRead(int64(n))
			}
			return n, nil
		}
		if errors.Is(err, io.EOF) {
			if err := s.endPart(); err != nil {
				s.err = err
				return 0, err
			}
			continue
		}
		if err != nil {
			s.err = &PartError{Part: s.cur.part.Name, Reason: "read_error", Err: err}
			return 0, s.err
		}
	}
}

// endPart closes the current part after checking that what was decoded is what was verified.
func (s *partStream) endPart() error {
	c := s.cur
	s.cur = nil
	defer s.release(c)
	if c.read != c.part.Size {
		return &PartError{Part: c.part.Name, Reason: "changed_during_restore", Err: fmt.Errorf("decoded %d bytes, verified %d", c.read, c.part.Size)}
	}
	if c.fp != nil {
		if now, err := fingerprintOf(c.f); err != nil || now != *c.fp {
			return &PartError{Part: c.part.Name, Reason: "changed_during_restore", Err: errors.New("the file was written to while it was being restored")}
		}
	}
	return nil
}

func (s *partStream) release(c *fetchResult) {
	if c == nil || c.f == nil {
		return
	}
	c.f.Close()
	if c.path != "" {
		os.Remove(c.path) // a staged copy; a target's own file is never removed
	}
}

// Err is the stream's own failure (a damaged part), if any.
func (s *partStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the stream and removes its staging files.
func (s *partStream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.release(s.cur)
	s.cur = nil
	if s.pending != nil {
		res := <-s.pending
		s.release(&res)
		s.pending = nil
	}
}

// ctxReader stops a copy loop when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}
