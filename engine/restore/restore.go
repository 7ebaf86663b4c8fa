// Package restore reads snapshots back (archive_v1; raw_tree_v1 in rawtree.go): Restore
// extracts one into a local directory, Verify checks every file against the entries index (by
// restoring into a scratch directory, or for a raw tree by hashing data/ in place), and List
// pages through the index for the UI's restore picker.
package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/targets"
)

// IdentityProvider gives the age identity of a key name.
type IdentityProvider interface {
	Identity(ctx context.Context, keyName string) (age.Identity, error)
}

// EventSink receives operation events.
type EventSink interface {
	Emit(level, kind, message string, fields map[string]any)
}

// Conflict policies.
const (
	ConflictOverwrite = "overwrite"
	ConflictSkip      = "skip"
	ConflictFail      = "fail"
)

// Error codes.
const (
	CodeIncomplete    = "snapshot_incomplete"
	CodeManifest      = "manifest_invalid"
	CodePart          = "part_invalid"
	CodeDecrypt       = "decrypt_failed"
	CodeArchive       = "archive_invalid"
	CodeConflict      = "restore_conflict"
	CodeUnsafeEntries = "unsafe_entries"
	CodeSelection     = "invalid_selection"
	CodeIO            = "restore_io"
	CodeCanceled      = "canceled"
	CodeFormat        = "unsupported_format"
	CodeDestination   = "invalid_destination"
)

// Error is a classified restore failure.
type Error struct {
	Code string
	Err  error
}

func (e *Error) Error() string { return e.Code + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Request is one restore to a local directory.
type Request struct {
	JobID, RunID string
	Target       targets.Target
	// Destination is the directory to restore into; it is created if missing.
	Destination string
	// StagingDir holds downloaded parts (at most two at a time); created and removed. Parts of a
	// local_dir target are verified and read where they are, never copied here.
	StagingDir string
	Conflict   string     // overwrite | skip | fail; default overwrite
	Selection  *Selection // nil: everything
	// KeepSpecialBits restores setuid, setgid and sticky bits as the archive has them. By
	// default they are stripped: a restore must not plant set-id programs (owned by whoever
	// runs the restore, often root) because a snapshot says so. Only an admin may ask for it.
	KeepSpecialBits bool
	// ProtectedDir is a directory the destination may neither be inside nor contain (the data
	// directory). The caller checked the request when it accepted it; the restore checks again
	// on the directory it actually opened, so a symlink swapped into the destination's path in
	// between (a queued restore gives time) leads nowhere.
	ProtectedDir string
	Keys         IdentityProvider
	Events       EventSink
	Progress     *progress.Reporter // stage "restore"; not closed
	Logger       zerolog.Logger
	// Sink is where the entries go; nil is the local directory Destination (LocalDir).
	Sink Sink

	// decoders overrides how many goroutines decode zstd (benchmarks compare with 1).
	decoders int
}

// Result summarises a restore.
type Result struct {
	Manifest      *format.Manifest `json:"-"`
	EntriesSeen   int64            `json:"entries_seen"`
	Written       int64            `json:"written"`
	Skipped       int64            `json:"skipped"`
	Refused       int64            `json:"refused"`
	RefusedSample []Refusal        `json:"refused_sample"`
	Bytes         int64            `json:"bytes"`

	// Unsupported counts entries a WebDAV destination cannot hold (symlinks, hard links,
	// special files): recorded, not materialized.
	Unsupported int64 `json:"unsupported,omitempty"`
}

// Refusal is an archive entry that was not written because it was unsafe.
type Refusal struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

const maxSamples = 50

// ReadManifest loads the manifest of a complete run; a run without complete.json is refused.
func ReadManifest(ctx context.Context, t targets.Target, run targets.RunRef) (*format.Manifest, error) {
	if _, err := t.Size(ctx, run, targets.CompleteName); err != nil {
		if errors.Is(err, targets.ErrNotExist) {
			return nil, &Error{Code: CodeIncomplete, Err: fmt.Errorf("run %s has no %s: it is not a complete snapshot", run.RunID, targets.CompleteName)}
		}
		return nil, fmt.Errorf("check %s: %w", targets.CompleteName, err)
	}
	rc, err := t.Open(ctx, run, targets.ManifestName)
	if err != nil {
		return nil, &Error{Code: CodeManifest, Err: fmt.Errorf("open manifest: %w", err)}
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, &Error{Code: CodeManifest, Err: fmt.Errorf("read manifest: %w", err)}
	}
	m, err := decodeManifest(b)
	if err != nil {
		return nil, &Error{Code: CodeManifest, Err: err}
	}
	return m, nil
}

// decodeManifest parses a manifest read from a target and refuses one that could make the
// restore touch anything but the run's own parts. A part name goes into path joins (a
// local_dir target's parts are read in place), so "../../master.key" would have let whoever
// can write to the target learn the size and hash of any file the Hub or agent can read.
func decodeManifest(b []byte) (*format.Manifest, error) {
	m, err := format.DecodeManifest(b)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(m.Artifacts))
	for i, p := range m.Artifacts {
		if !format.IsPartName(p.Name) || targets.ValidateName(p.Name) != nil {
			return nil, fmt.Errorf("artifact %d: %q is not a payload part name (%s + 6 or more digits)", i+1, p.Name, format.PartPrefix)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("artifact %d: %s is listed twice", i+1, p.Name)
		}
		seen[p.Name] = true
		if p.Size < 0 {
			return nil, fmt.Errorf("artifact %d: %s has a negative size", i+1, p.Name)
		}
	}
	if m.EntryIndex.Count < 0 {
		return nil, errors.New("entry_index.count is negative")
	}
	return m, nil
}

// Restore extracts a complete archive_v1 snapshot into req.Destination (or req.Sink); a
// raw_tree_v1 snapshot is restored by restoreRawTree, or restoreRawTreeToSink for WebDAV.
//
// Parts are fetched in order (a local_dir target's are read in place), each checked for size
// and BLAKE3 before any of its bytes is decoded (an error names the part); all parts are read
// even for a partial selection. Entries with absolute paths, "..", or whose path (or
// hard-link target) would pass through a symlink are refused and reported, never written; so
// is a directory whose mode and mtime cannot be applied because a later entry replaced it (by
// a symlink, say). Nothing is ever done through a symlink (see destDir). The restore then
// fails with unsafe_entries after writing the safe ones. Setuid, setgid and sticky bits are
// stripped unless req.KeepSpecialBits. Conflicts are decided per entry: a directory merges into
// an existing directory under every policy (its unrelated content is never deleted); a file or
// symlink meets an existing path with overwrite (replaced; a non-empty directory is never
// removed), skip or fail.
func Restore(ctx context.Context, req Request) (Result, error) {
	run := targets.RunRef{JobID: req.JobID, RunID: req.RunID}
	m, err := ReadManifest(ctx, req.Target, run)
	if err != nil {
		return Result{}, err
	}
	emit(req.Events, "info", "manifest", "manifest read", map[string]any{
		"parts": len(m.Artifacts), "encryption": m.Pipeline.Encryption, "entries": m.EntryIndex.Count,
	})
	var res Result
	l, local := req.Sink.(localSink)
	switch {
	case m.Pipeline.Format == format.FormatRawTreeV1 && (req.Sink == nil || local):
		if local {
			req.Destination = l.dir // the raw tree writes to its directory itself
		}
		res, err = restoreRawTree(ctx, req, run, m)
	case m.Pipeline.Format == format.FormatRawTreeV1:
		res, err = restoreRawTreeToSink(ctx, req, run, m)
	default:
		res, err = extract(ctx, req, run, m) // refuses a format it does not know
	}
	res.Manifest = m
	return res, err
}

// options is the request's conflict policy (overwrite when empty) and its selection made ready
// for matching (nil: everything), or why the request is unusable; every format and sink
// needs the same answer.
func options(req Request) (policy string, sel *matcher, err error) {
	policy = req.Conflict
	if policy == "" {
		policy = ConflictOverwrite
	}
	if policy != ConflictOverwrite && policy != ConflictSkip && policy != ConflictFail {
		return "", nil, &Error{Code: CodeConflict, Err: fmt.Errorf("unknown conflict policy %q", policy)}
	}
	if req.Selection != nil {
		if sel, err = req.Selection.normalize(); err != nil {
			return "", nil, &Error{Code: CodeSelection, Err: err}
		}
	}
	return policy, sel, nil
}

func emit(s EventSink, level, kind, msg string, fields map[string]any) {
	if s != nil {
		s.Emit(level, kind, msg, fields)
	}
}

func extract(ctx context.Context, req Request, run targets.RunRef, m *format.Manifest) (Result, error) {
	var res Result
	if m.Pipeline.Format != format.FormatArchiveV1 {
		return res, &Error{Code: CodeFormat, Err: fmt.Errorf("snapshot format %s cannot be restored by this version", m.Pipeline.Format)}
	}
	policy, sel, err := options(req)
	if err != nil {
		return res, err
	}
	sink := req.Sink
	if sink == nil {
		sink = LocalDir(req.Destination)
	}
	w, err := sink.open(ctx, &req, policy, sel, &res)
	if err != nil {
		return res, err
	}
	defer w.close()
	if err := os.MkdirAll(req.StagingDir, 0o700); err != nil {
		return res, &Error{Code: CodeIO, Err: fmt.Errorf("create staging: %w", err)}
	}
	defer os.RemoveAll(req.StagingDir)

	var total uint64
	for _, p := range m.Artifacts {
		total += uint64(p.Size)
	}
	req.Progress.Stage("restore", &progress.Units{Bytes: total})
	var readBytes atomic.Uint64 // counted by the decoder's reading goroutine
	ps := newPartStream(ctx, req.Target, run, m.Artifacts, req.StagingDir, func(n int64) {
		readBytes.Add(uint64(n))
	})
	defer ps.Close()

	var payload io.Reader = ps
	if m.Pipeline.Encryption == format.EncryptionAge {
		if req.Keys == nil || m.Pipeline.EncryptionKey == "" {
			return res, &Error{Code: CodeDecrypt, Err: errors.New("snapshot is age-encrypted but no key is available")}
		}
		id, err := req.Keys.Identity(ctx, m.Pipeline.EncryptionKey)
		if err != nil {
			return res, &Error{Code: CodeDecrypt, Err: fmt.Errorf("load age identity %q: %w", m.Pipeline.EncryptionKey, err)}
		}
		r, err := age.Decrypt(ps, id)
		if err != nil {
			return res, streamError(ctx, ps, CodeDecrypt, fmt.Errorf("age decrypt: %w", err))
		}
		payload = r
	} else if m.Pipeline.Encryption != format.EncryptionNone {
		return res, &Error{Code: CodeFormat, Err: fmt.Errorf("unknown encryption %q", m.Pipeline.Encryption)}
	}
	decoders := req.decoders
	if decoders <= 0 {
		// A synchronous decoder. The pipelined one (2+ goroutines) was measured on 2 cores
		// (BenchmarkRestoreLocal, 1 GiB): 10–25% more CPU and no faster, because the other core
		// already verifies the next part. Machines with cores to spare may gain from it.
		decoders = 1
	}
	zr, err := zstd.NewReader(payload, zstd.WithDecoderConcurrency(decoders), zstd.WithDecoderMaxWindow(1<<30))
	if err != nil {
		return res, streamError(ctx, ps, CodeArchive, fmt.Errorf("zstd: %w", err))
	}
	defer zr.Close()

	err = readEntries(ctx, tar.NewReader(zr), w, sel, &res, func() {
		req.Progress.Set(progress.Units{Files: uint64(res.Written), Bytes: readBytes.Load()})
	})
	if err != nil {
		var se *streamErr
		if errors.As(err, &se) {
			return res, streamError(ctx, ps, CodeArchive, se.err)
		}
		return res, err
	}
	// Read what follows the tar end (zstd frame end, age tag, the remaining parts) so every
	// part is verified even when the archive ends early or only a selection was wanted.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return res, streamError(ctx, ps, CodeArchive, fmt.Errorf("read payload tail: %w", err))
	}
	if _, err := io.Copy(io.Discard, ps); err != nil {
		return res, streamError(ctx, ps, CodeArchive, err)
	}
	if err := w.finish(ctx); err != nil {
		return res, err
	}
	req.Progress.Set(progress.Units{Files: uint64(res.Written), Bytes: readBytes.Load()})
	if res.Refused > 0 {
		emit(req.Events, "error", "unsafe_entries", fmt.Sprintf("%d unsafe archive entries were refused", res.Refused),
			map[string]any{"refused": res.Refused, "sample": res.RefusedSample})
		return res, &Error{Code: CodeUnsafeEntries, Err: fmt.Errorf("%d archive entries were refused as unsafe (first: %s: %s)",
			res.Refused, res.RefusedSample[0].Path, res.RefusedSample[0].Reason)}
	}
	return res, nil
}

// streamErr marks an error that came from reading the payload inside an entry.
type streamErr struct{ err error }

func (e *streamErr) Error() string { return e.err.Error() }

// streamError prefers the part stream's own error (missing, truncated, corrupted part) over
// what the decoder made of it.
func streamError(ctx context.Context, ps *partStream, code string, err error) error {
	var pe *PartError
	if errors.As(err, &pe) {
		return &Error{Code: CodePart, Err: pe}
	}
	if perr := ps.Err(); perr != nil {
		if errors.As(perr, &pe) {
			return &Error{Code: CodePart, Err: pe}
		}
		if ctx.Err() != nil {
			return &Error{Code: CodeCanceled, Err: ctx.Err()}
		}
		return &Error{Code: CodeIO, Err: perr}
	}
	if ctx.Err() != nil {
		return &Error{Code: CodeCanceled, Err: ctx.Err()}
	}
	return &Error{Code: code, Err: err}
}

// cleanName turns a tar name into a safe relative slash path, or reports why it is unsafe.
func cleanName(name string) (string, string) {
	n := strings.ReplaceAll(name, "\\", "/")
	if strings.IndexByte(n, 0) >= 0 {
		return "", "path contains a NUL byte"
	}
	if strings.HasPrefix(n, "/") {
		return "", "absolute path"
	}
	if len(n) >= 2 && n[1] == ':' {
		return "", "absolute path"
	}
	n = strings.TrimSuffix(n, "/")
	for strings.HasPrefix(n, "./") {
		n = n[2:]
	}
	if n == "" || n == "." {
		return "", "empty path"
	}
	for _, seg := range strings.Split(n, "/") {
		if seg == ".." {
			return "", "path contains .."
		}
	}
	// Collapse "a//b" and "a/./b".
	var parts []string
	for _, seg := range strings.Split(n, "/") {
		if seg != "" && seg != "." {
			parts = append(parts, seg)
		}
	}
	if len(parts) == 0 {
		return "", "empty path"
	}
	out := strings.Join(parts, "/")
	// Checked again once "./" and empty segments are gone: "./C:/x" is a drive path too, and
	// cleaning a cleaned name must give the same name.
	if len(out) >= 2 && out[1] == ':' {
		return "", "absolute path"
	}
	return out, ""
}
