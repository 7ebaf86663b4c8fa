package restore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

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

// partStream concatenates verified parts. The next part is fetched in the background while the
// current one is decoded, so at most two parts sit in staging.
type partStream struct {
	ctx    context.Context
	t      targets.Target
	run    targets.RunRef
	parts  []format.Part
	dir    string
	onRead func(n int64)

	next    int
	cur     *os.File
	curPath string
	pending chan fetchResult
	err     error
}

type fetchResult struct {
	path string
	err  error
}

func newPartStream(ctx context.Context, t targets.Target, run targets.RunRef, parts []format.Part, dir string, onRead func(int64)) *partStream {
	s := &partStream{ctx: ctx, t: t, run: run, parts: parts, dir: dir, onRead: onRead}
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
		path, err := fetchPart(s.ctx, s.t, s.run, p, s.dir)
		ch <- fetchResult{path, err}
	}()
}

func (s *partStream) Read(b []byte) (int, error) {
	for {
		if s.err != nil {
			return 0, s.err
		}
		if s.cur == nil {
			if s.pending == nil {
				return 0, io.EOF
			}
			res := <-s.pending
			if res.err != nil {
				s.err = res.err
				s.pending = nil
				return 0, s.err
			}
			f, err := os.Open(res.path)
			if err != nil {
				s.err = fmt.Errorf("open staging part: %w", err)
				return 0, s.err
			}
			s.cur, s.curPath = f, res.path
			s.prefetch()
		}
		n, err := s.cur.Read(b)
		if n > 0 {
			if s.onRead != nil {
				s.onRead(int64(n))
			}
			return n, nil
		}
		if errors.Is(err, io.EOF) {
			s.cur.Close()
			os.Remove(s.curPath)
			s.cur = nil
			continue
		}
		if err != nil {
			s.err = fmt.Errorf("read staging part: %w", err)
			return 0, s.err
		}
	}
}

// Close stops the stream and removes its staging files.
func (s *partStream) Close() {
	if s.cur != nil {
		s.cur.Close()
		os.Remove(s.curPath)
		s.cur = nil
	}
	if s.pending != nil {
		res := <-s.pending
		if res.path != "" {
			os.Remove(res.path)
		}
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
