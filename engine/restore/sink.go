package restore

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bastion-backup/bastion/engine/pathguard"
)

// Sink is where a restore writes the entries of a snapshot: a local directory (LocalDir, the
// default) or a WebDAV collection (WebDAV). The archive is read, checked and its entry names
// cleaned and selected in one place; a sink only writes what it is handed.
type Sink interface {
	// open prepares the destination (creates it) and returns the writer of the entries.
	open(ctx context.Context, req *Request, policy string, sel *matcher, res *Result) (entryWriter, error)
}

// entryWriter writes the entries of one restore.
type entryWriter interface {
	// write writes one entry; rel is a clean relative slash path (cleanName) the selection
	// matched, and tr reads the entry's data.
	write(ctx context.Context, rel string, h *tar.Header, tr io.Reader) error
	// finish runs once after the last entry, when the whole payload was read and verified.
	finish(ctx context.Context) error
	close() error
}

// LocalDir is the local directory dir as a restore's destination; it is created if missing.
func LocalDir(dir string) Sink { return localSink{dir: dir} }

type localSink struct{ dir string }

func (l localSink) open(_ context.Context, req *Request, policy string, sel *matcher, res *Result) (entryWriter, error) {
	x, err := openExtractor(l.dir, req, policy, sel, res)
	if err != nil {
		return nil, err
	}
	return x, nil
}

// openExtractor creates dir if missing, opens it and, when the request protects a directory,
// refuses a destination that resolved into it or around it.
func openExtractor(dir string, req *Request, policy string, sel *matcher, res *Result) (*extractor, error) {
	dest, err := filepath.Abs(dir)
	if err != nil {
		return nil, &Error{Code: CodeIO, Err: fmt.Errorf("destination: %w", err)}
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, &Error{Code: CodeIO, Err: fmt.Errorf("create destination: %w", err)}
	}
	d, err := openDestDir(dest)
	if err != nil {
		return nil, &Error{Code: CodeIO, Err: fmt.Errorf("open destination: %w", err)}
	}
	if req.ProtectedDir != "" {
		real, err := d.realPath()
		if err != nil {
			d.Close()
			return nil, &Error{Code: CodeIO, Err: fmt.Errorf("resolve the opened destination: %w", err)}
		}
		if overlaps, err := pathguard.Overlaps(real, req.ProtectedDir); err != nil || overlaps {
			d.Close()
			return nil, &Error{Code: CodeDestination, Err: fmt.Errorf(
				"the destination %s is now %s, inside the data directory or containing it; nothing was restored", dest, real)}
		}
	}
	return &extractor{d: d, policy: policy, keepSpecial: req.KeepSpecialBits, sel: sel, res: res, buf: make([]byte, 1<<20)}, nil
}

func (x *extractor) finish(context.Context) error { return x.finishDirs() }
func (x *extractor) close() error                 { return x.d.Close() }
