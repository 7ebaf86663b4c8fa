package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/targets"
)

// DAVTree is the WebDAV collection a restore writes into (engine/targets/webdav.Tree): paths
// are slash-separated and relative to it, and it refuses any that would leave it.
type DAVTree interface {
	// Mkcol makes collection rel ("" the tree's own) and missing parents.
	Mkcol(ctx context.Context, rel string) error
	// Size is the size of file rel, or an error matching targets.ErrNotExist.
	Size(ctx context.Context, rel string) (int64, error)
	// Delete removes file rel; a missing one is fine.
	Delete(ctx context.Context, rel string) error
	// Put stores size bytes of body as file rel, rewinding body before each attempt.
	Put(ctx context.Context, rel string, body io.ReadSeeker, size int64) error
}

// MetaDir is the collection below a WebDAV destination where each restore records what it did
// with every entry, and the metadata WebDAV cannot hold (mode, owner, mtime, link targets):
// <prefix>/.bastion-meta/restore/<op_id>/entries/<blake3 of the record>.json.
const MetaDir = ".bastion-meta"

// Actions of a WebDAV restore's entry records.
const (
	ActionWritten            = "written"
	ActionSkippedExisting    = "skipped_existing"
	ActionSkippedUnsupported = "skipped_unsupported"
)

// PAX records of an entry that its WebDAV record carries: extended attributes (the key tar
// uses; the record has the value base64-encoded, like a raw tree's index) and, for a raw tree
// record, its hardlink_group (a key of ours: WebDAV cannot link, so each member is uploaded as
// a file and only the record says they were one).
const (
	paxXattr         = "SCHILY.xattr."
	paxHardlinkGroup = "BASTION.hardlink_group"
)

// MetaEntry is one entry record of a WebDAV restore.
type MetaEntry struct {
	Path          string            `json:"path"`
	Kind          string            `json:"kind"`
	LinkName      string            `json:"link_name,omitempty"`
	Mode          *int64            `json:"mode,omitempty"`
	UID           *int64            `json:"uid,omitempty"`
	GID           *int64            `json:"gid,omitempty"`
	MTime         *int64            `json:"mtime,omitempty"`
	Size          *int64            `json:"size,omitempty"`
	Xattrs        map[string]string `json:"xattrs,omitempty"`
	HardlinkGroup string            `json:"hardlink_group,omitempty"`
	Action        string            `json:"action"`
}

// WebDAV is a WebDAV collection as a restore's destination, for operation opID (which names its
// metadata collection). The collection and its parents are made first. Directories are made
// without conflict checks (servers disagree on what a collection "exists" means); a file that
// exists (HEAD) is replaced (DELETE, then PUT), skipped or fails the restore, by the conflict
// policy. Each file is spooled to a temporary file in the request's staging directory first
// (before any DELETE), so memory stays bounded, a failed PUT can be retried from the start and
// an entry whose reader fails before its end is neither stored nor costs the file it replaces. Symlinks, hard links and
// special files are not materialized: only their records say what they were. Cancellation is
// checked between entries and stops a transfer in progress.
func WebDAV(tree DAVTree, opID string) Sink { return davSink{tree: tree, opID: opID} }

type davSink struct {
	tree DAVTree
	opID string
}

func (s davSink) open(ctx context.Context, req *Request, policy string, _ *matcher, res *Result) (entryWriter, error) {
	if err := targets.ValidateName(s.opID); err != nil {
		return nil, &Error{Code: CodeDestination, Err: fmt.Errorf("operation id: %w", err)}
	}
	w := &davWriter{tree: s.tree, policy: policy, res: res, spoolDir: req.StagingDir,
		metaDir: MetaDir + "/restore/" + s.opID + "/entries", made: map[string]bool{}, buf: make([]byte, 1<<20)}
	if err := s.tree.Mkcol(ctx, ""); err != nil {
		return nil, fmt.Errorf("create the WebDAV destination: %w", err)
	}
	if err := w.mkdirs(ctx, w.metaDir); err != nil {
		return nil, err
	}
	return w, nil
}

type davWriter struct {
	tree     DAVTree
	policy   string
	res      *Result
	spoolDir string
	metaDir  string
	made     map[string]bool // collections made by this restore
	buf      []byte
}

// mkdirs makes collection rel and its ancestors below the destination, each once.
func (w *davWriter) mkdirs(ctx context.Context, rel string) error {
	segs := strings.Split(rel, "/")
	for i := range segs {
		p := strings.Join(segs[:i+1], "/")
		if w.made[p] {
			continue
		}
		if err := w.tree.Mkcol(ctx, p); err != nil {
			return fmt.Errorf("create the WebDAV collection %s: %w", p, err)
		}
		w.made[p] = true
	}
	return nil
}

func (w *davWriter) write(ctx context.Context, rel string, h *tar.Header, tr io.Reader) error {
	switch h.Typeflag {
	case tar.TypeDir:
		if err := w.mkdirs(ctx, rel); err != nil {
			return err
		}
		w.res.Written++
		return w.record(ctx, rel, h, ActionWritten)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return w.file(ctx, rel, h, tr)
	}
	w.res.Unsupported++
	return w.record(ctx, rel, h, ActionSkippedUnsupported)
}

func (w *davWriter) file(ctx context.Context, rel string, h *tar.Header, tr io.Reader) error {
	if dir := path.Dir(rel); dir != "." {
		if err := w.mkdirs(ctx, dir); err != nil {
			return err
		}
	}
	_, err := w.tree.Size(ctx, rel)
	exists := err == nil
	switch {
	case errors.Is(err, targets.ErrNotExist):
	case err != nil:
		return fmt.Errorf("check whether %s exists on the WebDAV destination: %w", rel, err)
	case w.policy == ConflictSkip:
		w.res.Skipped++
		return w.record(ctx, rel, h, ActionSkippedExisting)
	case w.policy == ConflictFail:
		return &Error{Code: CodeConflict, Err: fmt.Errorf("%s already exists on the WebDAV destination (conflict policy fail)", rel)}
	}
	spool, err := os.CreateTemp(w.spoolDir, "entry-*")
	if err != nil {
		return &Error{Code: CodeIO, Err: fmt.Errorf("spool %s: %w", rel, err)}
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	n, err := copyEntry(ctx, w.buf, spool, tr)
	if err != nil {
		return err
	}
	// The existing file goes only once the new content is whole and checked (a raw tree's data/
	// file is verified at its end): a damaged one must not cost the file it would replace.
	if exists {
		if err := w.tree.Delete(ctx, rel); err != nil {
			return fmt.Errorf("replace %s on the WebDAV destination: %w", rel, err)
		}
	}
	if err := w.tree.Put(ctx, rel, spool, n); err != nil {
		return fmt.Errorf("upload %s to the WebDAV destination: %w", rel, err)
	}
	w.res.Written++
	w.res.Bytes += n
	return w.record(ctx, rel, h, ActionWritten)
}

// record stores the entry's record under the metadata collection, named by its own hash.
func (w *davWriter) record(ctx context.Context, rel string, h *tar.Header, action string) error {
	mode, uid, gid, mtime, size := h.Mode, int64(h.Uid), int64(h.Gid), h.ModTime.Unix(), h.Size
	e := MetaEntry{Path: rel, Kind: tarKind(h.Typeflag), LinkName: h.Linkname,
		Mode: &mode, UID: &uid, GID: &gid, MTime: &mtime, Size: &size, Action: action,
		HardlinkGroup: h.PAXRecords[paxHardlinkGroup]}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxXattr); ok && name != "" {
			if e.Xattrs == nil {
				e.Xattrs = map[string]string{}
			}
			e.Xattrs[name] = base64.StdEncoding.EncodeToString([]byte(v))
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode the record of %s: %w", rel, err)
	}
	sum := blake3.Sum256(b)
	name := w.metaDir + "/" + hex.EncodeToString(sum[:]) + ".json"
	if err := w.tree.Put(ctx, name, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("store the record of %s on the WebDAV destination: %w", rel, err)
	}
	return nil
}

func tarKind(t byte) string {
	switch t {
	case tar.TypeDir:
		return "dir"
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return "file"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hardlink"
	case tar.TypeFifo:
		return "fifo"
	case tar.TypeBlock:
		return "block_special"
	case tar.TypeChar:
		return "char_special"
	}
	return "other"
}

func (w *davWriter) finish(context.Context) error { return nil }
func (w *davWriter) close() error                 { return nil }

// copyEntry copies an entry's data, checking for cancellation between reads. A failure to
// read the archive is a *streamErr.
func copyEntry(ctx context.Context, buf []byte, dst io.Writer, src io.Reader) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, &Error{Code: CodeCanceled, Err: err}
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total, &Error{Code: CodeIO, Err: fmt.Errorf("write: %w", werr)}
			}
			total += int64(n)
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, &streamErr{err: err}
		}
	}
}
