package backup

import (
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"path/filepath"

	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
)

// closedPart is a finished part file on staging.
type closedPart struct {
	format.Part
	Path string
}

// partWriter splits a stream into files payload.partNNNNNN of exactly size bytes (the last one
// shorter), hashing each with BLAKE3 while writing. A part file is opened on its first byte,
// so no empty trailing part exists. Each closed part goes to onPart, which may block
// (backpressure) or fail (the write then fails with its error).
type partWriter struct {
	dir    string
	size   int64
	onPart func(closedPart) error

	n    int // parts opened so far
	f    *os.File
	path string
	h    hash.Hash
	cur  int64
	err  error
}

func newPartWriter(dir string, size int64, onPart func(closedPart) error) *partWriter {
	return &partWriter{dir: dir, size: size, onPart: onPart}
}

func (w *partWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	written := 0
	for len(p) > 0 {
		if w.f == nil {
			if err := w.open(); err != nil {
				w.err = err
				return written, err
			}
		}
		chunk := p
		if room := w.size - w.cur; int64(len(chunk)) > room {
			chunk = chunk[:room]
		}
		n, err := w.f.Write(chunk)
		w.h.Write(chunk[:n])
		w.cur += int64(n)
		written += n
		p = p[n:]
		if err != nil {
			w.err = fmt.Errorf("write %s: %w", filepath.Base(w.path), err)
			return written, w.err
		}
		if w.cur == w.size {
			if err := w.closePart(); err != nil {
				w.err = err
				return written, err
			}
		}
	}
	return written, nil
}

func (w *partWriter) open() error {
	w.n++
	w.path = filepath.Join(w.dir, format.PartName(w.n))
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create part: %w", err)
	}
	w.f, w.h, w.cur = f, blake3.New(), 0
	return nil
}

func (w *partWriter) closePart() error {
	f := w.f
	w.f = nil
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", filepath.Base(w.path), err)
	}
	p := closedPart{
		Part: format.Part{Name: filepath.Base(w.path), Size: w.cur, HashAlg: format.HashAlgBLAKE3, Hash: hex.EncodeToString(w.h.Sum(nil))},
		Path: w.path,
	}
	return w.onPart(p)
}

// Close closes the last, partially filled part.
func (w *partWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.f != nil {
		if err := w.closePart(); err != nil {
			w.err = err
			return err
		}
	}
	return nil
}

// abort closes an open part file without reporting it.
func (w *partWriter) abort() {
	if w.f != nil {
		_ = w.f.Close()
		w.f = nil
	}
}
