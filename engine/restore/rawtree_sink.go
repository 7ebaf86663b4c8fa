package restore

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/targets"
)

// restoreRawTreeToSink restores a raw_tree_v1 snapshot into req.Sink (WebDAV; a local
// directory goes through restoreRawTree, which does more than a sink can): each index record is
// handed to the sink as the tar entry it would have been in an archive, so the sink's rules
// apply to both formats alike. Names, the selection and hostile records are handled as in
// restoreRawTree. A file's reader fails at its end unless data/<path> has the size and BLAKE3 of
// the index, and a sink stores nothing of an entry whose reader failed (the WebDAV sink spools
// it whole before its PUT), so nothing unverified reaches the destination.
func restoreRawTreeToSink(ctx context.Context, req Request, run targets.RunRef, m *format.Manifest) (Result, error) {
	var res Result
	policy, sel, err := options(req)
	if err != nil {
		return res, err
	}
	// The index first: a snapshot whose index cannot be read leaves the destination untouched.
	indexPath, err := stageRawIndex(ctx, req, run)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(req.StagingDir)
	w, err := req.Sink.open(ctx, &req, policy, sel, &res)
	if err != nil {
		return res, err
	}
	defer w.close()

	req.Progress.Stage("restore", &progress.Units{Files: uint64(max(m.EntryIndex.Count, 0))})
	err = scanIndex(indexPath, func(e format.Entry) error {
		if err := ctx.Err(); err != nil {
			return &Error{Code: CodeCanceled, Err: err}
		}
		res.EntriesSeen++
		rel, why := cleanName(e.Path)
		if why != "" {
			refuse(&res, e.Path, why)
			return nil
		}
		if sel != nil && !sel.match(rel) {
			return nil
		}
		h, why := rawHeader(rel, e)
		if why != "" {
			refuse(&res, rel, why)
			return nil
		}
		var body io.Reader = strings.NewReader("")
		if h.Typeflag == tar.TypeReg {
			dr := newDataReader(ctx, req.Target, run, rel, e)
			defer dr.Close()
			body = dr
		}
		if err := w.write(ctx, rel, h, body); err != nil {
			// copyEntry reports a failing reader as a *streamErr; ours already says which
			// data/ file failed and why.
			var se *streamErr
			if errors.As(err, &se) {
				var re *Error
				if errors.As(se.err, &re) {
					return re
				}
				return &Error{Code: CodePart, Err: &PartError{Part: targets.DataName(rel), Reason: "read_error", Err: se.err}}
			}
			return err
		}
		req.Progress.Set(progress.Units{Files: uint64(res.Written), Bytes: uint64(res.Bytes)})
		return nil
	})
	err = endRawRestore(req, &res, err, func() error { return w.finish(ctx) })
	return res, err
}

// rawHeader is the tar header index record e (at the clean path rel) would have had in an
// archive, or why the record cannot be restored: a file whose size is negative or whose path
// cannot name a data/ file, a symlink without a usable target, an unknown kind. Metadata the
// record lacks gets the defaults a local restore applies; its hard-link group and extended
// attributes travel as PAX records, for a WebDAV sink's entry records.
func rawHeader(rel string, e format.Entry) (*tar.Header, string) {
	h := &tar.Header{Name: rel}
	switch e.Kind {
	case format.KindDir:
		h.Typeflag, h.Mode = tar.TypeDir, 0o755
	case format.KindFile:
		if err := targets.ValidateName(targets.DataName(rel)); err != nil {
			return nil, "cannot name a data/ file: " + err.Error()
		}
		if e.Size < 0 {
			return nil, "negative size"
		}
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, e.Size
	case format.KindSymlink:
		if e.SymlinkTarget == nil || *e.SymlinkTarget == "" || strings.IndexByte(*e.SymlinkTarget, 0) >= 0 {
			return nil, "symlink without a usable symlink_target"
		}
		h.Typeflag, h.Mode, h.Linkname = tar.TypeSymlink, 0o777, *e.SymlinkTarget
	default:
		return nil, fmt.Sprintf("unsupported entry kind %q", e.Kind)
	}
	if e.Mode != nil {
		h.Mode = int64(*e.Mode & 0o7777)
	}
	if e.UID != nil {
		h.Uid = int(*e.UID)
	}
	if e.GID != nil {
		h.Gid = int(*e.GID)
	}
	if e.Mtime != nil {
		h.ModTime = time.Unix(*e.Mtime, 0)
	}
	if e.HardlinkGroup != nil && *e.HardlinkGroup != "" {
		h.PAXRecords = map[string]string{paxHardlinkGroup: *e.HardlinkGroup}
	}
	for name, v := range e.Xattrs {
		val, err := base64.StdEncoding.DecodeString(v)
		if err != nil || name == "" {
			continue // unusable; a local restore skips it too
		}
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[paxXattr+name] = string(val)
	}
	return h, ""
}

// dataReader reads data/<rel> of a raw tree run, opened at the first Read (a file the sink
// skips is never downloaded). It fails as soon as the file is longer than the index says and,
// at its end, unless it had exactly that size and, when the index has a hash, that BLAKE3;
// every failure is an *Error naming data/<rel>, so a reader of it stores nothing it had no
// io.EOF for.
type dataReader struct {
	ctx  context.Context
	t    targets.Target
	run  targets.RunRef
	name string
	e    format.Entry
	rc   io.ReadCloser
	r    io.Reader
	h    *blake3.Hasher
	n    int64
}

func newDataReader(ctx context.Context, t targets.Target, run targets.RunRef, rel string, e format.Entry) *dataReader {
	return &dataReader{ctx: ctx, t: t, run: run, name: targets.DataName(rel), e: e, h: blake3.New()}
}

func (d *dataReader) partErr(reason string, err error) error {
	if d.ctx.Err() != nil {
		return &Error{Code: CodeCanceled, Err: d.ctx.Err()}
	}
	return &Error{Code: CodePart, Err: &PartError{Part: d.name, Reason: reason, Err: err}}
}

func (d *dataReader) Read(p []byte) (int, error) {
	if err := d.ctx.Err(); err != nil {
		return 0, &Error{Code: CodeCanceled, Err: err}
	}
	if d.rc == nil {
		rc, err := d.t.Open(d.ctx, d.run, d.name)
		if err != nil {
			reason := "read_error"
			if errors.Is(err, targets.ErrNotExist) {
				reason = "missing"
			}
			return 0, d.partErr(reason, err)
		}
		// One byte more than the index says, so a longer file is noticed without reading it all.
		d.rc, d.r = rc, io.LimitReader(rc, d.e.Size+1)
	}
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	if d.n > d.e.Size {
		return n, d.partErr("size_mismatch", fmt.Errorf("more than the %d bytes the index says", d.e.Size))
	}
	if err == nil {
		return n, nil
	}
	if !errors.Is(err, io.EOF) {
		return n, d.partErr("read_error", err)
	}
	if d.n != d.e.Size {
		return n, d.partErr("size_mismatch", fmt.Errorf("read %d bytes, index says %d", d.n, d.e.Size))
	}
	if e := d.e; e.Hash != nil {
		if got := hex.EncodeToString(d.h.Sum(nil)); (e.HashAlg != nil && *e.HashAlg != format.HashAlgBLAKE3) || got != *e.Hash {
			return n, d.partErr("hash_mismatch", fmt.Errorf("blake3 %s, index says %s", got, *e.Hash))
		}
	}
	return n, io.EOF
}

// Close closes the data file if it was opened.
func (d *dataReader) Close() error {
	if d.rc == nil {
		return nil
	}
	return d.rc.Close()
}
