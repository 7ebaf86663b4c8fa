package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/progress"
)

// archiver writes selected items as tar entries and index lines, hashing file bodies and
// tracking whether files changed while they were read.
type archiver struct {
	tw        *tar.Writer
	index     *indexWriter
	issues    *fsIssues
	cons      *consistency
	hardlinks map[[2]uint64]hardlinkTarget // nil unless hardlink_policy keep
	buf       []byte
	hasher    *blake3.Hasher // reused for every streamed file
	sum       [32]byte
	done      progress.Units
	onDone    func(progress.Units)
	ra        *readAhead // nil: every file is read when it is written
	hdr       tar.Header
}

type hardlinkTarget struct {
	arch string
	size int64
	hash string
}

// copyChunk bounds how much is copied between two cancellation checks.
const copyChunk = 1 << 20

func (a *archiver) add(ctx context.Context, it item) error {
	mode := it.info.Mode()
	switch {
	case mode.IsDir():
		return a.addDir(it)
	case mode&fs.ModeSymlink != 0:
		return a.addSymlink(it)
	case mode.IsRegular():
		return a.addFile(ctx, it)
	}
	return nil
}

// baseHeader is an entry's header. Its mtime is whole seconds, as the original's GNU headers
// have it: with nanoseconds archive/tar adds a PAX extended header to every entry (two more
// 512-byte blocks per file to write and compress), and restore sets whole seconds either way.
// PAX records are still written when an entry needs one (a long name or link, a large id).
// The header is the archiver's own, reused for every entry (WriteHeader copies it).
// fi is the entry's stat: the walk's, or for a file the open handle's.
func (a *archiver) baseHeader(it item, fi fs.FileInfo, id fileID) *tar.Header {
	a.hdr = tar.Header{
		Name:    it.arch,
		Mode:    int64(unixPerm(fi.Mode())),
		ModTime: wholeSeconds(fi.ModTime()),
		Uid:     int(id.UID),
		Gid:     int(id.GID),
		Format:  tar.FormatPAX,
	}
	return &a.hdr
}

// wholeSeconds drops the sub-second part of t, rounding toward the past like tar does.
func wholeSeconds(t time.Time) time.Time { return time.Unix(t.Unix(), 0) }

// unixPerm converts Go's mode bits to the unix permission, setuid, setgid and sticky bits.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

func (a *archiver) addDir(it item) error {
	h := a.baseHeader(it, it.info, statID(it.info))
	h.Typeflag = tar.TypeDir
	h.Name = it.arch + "/"
	if err := a.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write tar header %s: %w", it.arch, err)
	}
	a.done.Dirs++
	a.progress()
	return a.index.add(format.Entry{Path: it.arch, Kind: format.KindDir})
}

func (a *archiver) addSymlink(it item) error {
	target, err := readLink(it.fsPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			vanished(a.issues, a.cons, it.arch, it.info, err, msgVanished)
			return nil
		}
		return a.issues.fail(it.arch, fmt.Errorf("read symlink: %w", err))
	}
	h := a.baseHeader(it, it.info, statID(it.info))
	h.Typeflag = tar.TypeSymlink
	h.Linkname = target
	if err := a.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write tar header %s: %w", it.arch, err)
	}
	a.done.Files++
	a.progress()
	return a.index.add(format.Entry{Path: it.arch, Kind: format.KindSymlink})
}

func (a *archiver) addFile(ctx context.Context, it item) error {
	f, fi, err := openRegular(it)
	if err != nil {
		return a.openFailed(it, err)
	}
	defer f.Close()
	return a.writeFile(ctx, it, f, fi)
}

// openFailed records a file that could not be opened: gone since the walk listed it (a
// warning), or unreadable (an error, fatal under fail_fast).
func (a *archiver) openFailed(it item, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		vanished(a.issues, a.cons, it.arch, it.walkInfo(), err, msgVanished)
		return nil
	}
	// A file the listing called regular that is something else when opened (a FUSE filesystem
	// that types entries wrongly, or one swapped in) is skipped as the walk skips special files.
	if nr := (*notRegularError)(nil); it.listed && errors.As(err, &nr) {
		a.issues.warn(it.arch, "special file skipped ("+nr.kind+")")
		return nil
	}
	return a.issues.fail(it.arch, fmt.Errorf("open: %w", err))
}

// hardlink writes a tar hard link when fi names a file already archived under
// hardlink_policy keep, and reports whether it did.
func (a *archiver) hardlink(it item, fi fs.FileInfo, id fileID) (bool, error) {
	if a.hardlinks == nil || !id.HasID || id.Nlink <= 1 {
		return false, nil
	}
	first, ok := a.hardlinks[[2]uint64{id.Dev, id.Ino}]
	if !ok {
		return false, nil
	}
	h := a.baseHeader(it, fi, id)
	h.Typeflag = tar.TypeLink
	h.Linkname = first.arch
	if err := a.tw.WriteHeader(h); err != nil {
		return true, fmt.Errorf("write tar header %s: %w", it.arch, err)
	}
	a.done.Files++
	a.progress()
	return true, a.index.add(format.FileEntry(it.arch, first.size, first.hash))
}

// writeFile streams an open regular file into the archive, chunk by chunk.
func (a *archiver) writeFile(ctx context.Context, it item, f srcFile, fi fs.FileInfo) error {
	before := statID(fi)
	if linked, err := a.hardlink(it, fi, before); linked || err != nil {
		return err
	}
	size := fi.Size()
	if err := a.fileHeader(it, before, fi); err != nil {
		return err
	}
	hasher := a.hasher
	hasher.Reset()
	copied, readErr, err := copyHashed(ctx, it, f, a.tw, hasher, a.buf, size, func(m int) {
		a.done.Bytes += uint64(m)
		a.progress()
	}, func(werr error) error { return fmt.Errorf("archive %s: %w", it.arch, werr) })
	if err != nil {
		return err
	}
	if copied < size {
		hashZeros(hasher, a.buf, size-copied)
	}
	hash := hex.EncodeToString(hasher.Sum(a.sum[:0]))
	return a.finishFile(it, before, size, copied, hash, observe(it, f, before, size, readErr), readErr)
}

// copyHashed streams the first size bytes of f into dst through buf, hashing them into h and
// calling onChunk with each chunk's length. A read error or an early end of f (the file shrank)
// stops the copy short: readErr is that error (nil for a shrink) and the caller decides what a
// short copy means. err is cancellation (context.Cause) or a failure to write dst as wrapWrite
// words it; the test hook afterCopyHook runs only when the copy was not abandoned for one.
func copyHashed(ctx context.Context, it item, f io.Reader, dst, h io.Writer, buf []byte, size int64,
	onChunk func(int), wrapWrite func(error) error) (copied int64, readErr, err error) {
	for copied < size {
		if err := ctx.Err(); err != nil {
			return copied, nil, context.Cause(ctx)
		}
		n := min(int64(len(buf)), size-copied)
		m, err := io.ReadFull(f, buf[:n])
		if m > 0 {
			h.Write(buf[:m])
			if _, werr := dst.Write(buf[:m]); werr != nil {
				return copied, nil, wrapWrite(werr)
			}
			copied += int64(m)
			onChunk(m)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				readErr = err
			}
			break
		}
	}
	if afterCopyHook != nil {
		afterCopyHook(it.fsPath)
	}
	return copied, readErr, nil
}

// fileHeader writes the tar header of a regular file of fi's size.
func (a *archiver) fileHeader(it item, id fileID, fi fs.FileInfo) error {
	h := a.baseHeader(it, fi, id)
	h.Typeflag = tar.TypeReg
	h.Size = fi.Size()
	if err := a.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write tar header %s: %w", it.arch, err)
	}
	return nil
}

// finishFile completes a file whose header and copied bytes were written: it pads a file that
// shrank, records the consistency observation and a read error, and writes the index line.
// hash is the BLAKE3 of what the archive holds: the copied bytes and the zero padding.
func (a *archiver) finishFile(it item, before fileID, size, copied int64, hash string, obs observation, readErr error) error {
	if copied < size {
		// The file shrank or a read failed: pad with zeros so the tar stays valid; the index
		// hash covers what the archive holds, and the consistency report says why.
		if err := a.pad(size - copied); err != nil {
			return fmt.Errorf("archive %s: %w", it.arch, err)
		}
	}
	a.done.Files++
	a.progress()
	a.cons.apply(obs)
	if readErr != nil {
		if err := a.issues.fail(it.arch, fmt.Errorf("read: %w", readErr)); err != nil {
			return err
		}
	}
	if a.hardlinks != nil && before.HasID && before.Nlink > 1 {
		a.hardlinks[[2]uint64{before.Dev, before.Ino}] = hardlinkTarget{arch: it.arch, size: size, hash: hash}
	}
	return a.index.add(format.FileEntry(it.arch, size, hash))
}

func (a *archiver) pad(n int64) error {
	clear(a.buf)
	for n > 0 {
		k := min(n, int64(len(a.buf)))
		if _, err := a.tw.Write(a.buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// hashZeros adds n zero bytes to h, using buf as scratch.
func hashZeros(h io.Writer, buf []byte, n int64) {
	clear(buf)
	for n > 0 {
		k := min(n, int64(len(buf)))
		h.Write(buf[:k])
		n -= k
	}
}

func (a *archiver) progress() {
	if a.onDone != nil {
		a.onDone(a.done)
	}
}

// indexWriter writes entries.jsonl.zst to staging while the walk runs, so the index never has
// to be held in memory.
type indexWriter struct {
	f     *os.File
	enc   *zstd.Encoder
	line  bytes.Buffer
	count int64
}

func newIndexWriter(path string) (*indexWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create entries index: %w", err)
	}
	enc, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(format.ZstdLevel)), zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create entries index encoder: %w", err)
	}
	return &indexWriter{f: f, enc: enc}, nil
}

func (w *indexWriter) add(e format.Entry) error {
	w.line.Reset()
	if err := e.AppendLine(&w.line); err != nil {
		return err
	}
	if _, err := w.enc.Write(w.line.Bytes()); err != nil {
		return fmt.Errorf("write entries index: %w", err)
	}
	w.count++
	return nil
}

func (w *indexWriter) close() error {
	if w.enc == nil {
		return nil
	}
	err := w.enc.Close()
	w.enc = nil
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("finish entries index: %w", err)
	}
	return nil
}

// consistency tracks files that changed while being archived (report v2 of backup.md §3.1).
type consistency struct {
	ChangedTotal    int64               `json:"changed_total"`
	ReplacedTotal   int64               `json:"replaced_total"`
	DeletedTotal    int64               `json:"deleted_total"`
	ReadErrorTotal  int64               `json:"read_error_total"`
	SampleTruncated bool                `json:"sample_truncated"`
	Sample          []consistencySample `json:"sample"`
	V               int                 `json:"v"`
}

type consistencySample struct {
	Path        string       `json:"path"`
	Reason      string       `json:"reason"`
	Before      *fingerprint `json:"before,omitempty"`
	AfterHandle *fingerprint `json:"after_handle,omitempty"`
	AfterPath   *fingerprint `json:"after_path,omitempty"`
	Error       string       `json:"error,omitempty"`
}

type fingerprint struct {
	SizeBytes  int64  `json:"size_bytes"`
	MtimeNanos int64  `json:"mtime_unix_nanos"`
	Dev        uint64 `json:"dev,omitempty"`
	Ino        uint64 `json:"ino,omitempty"`
}

// Consistency reasons.
const (
	ReasonFileIDChanged    = "file_id_changed"
	ReasonSizeChanged      = "size_changed"
	ReasonMtimeChanged     = "mtime_changed"
	ReasonStatAfterMissing = "stat_after_missing"
	ReasonReadError        = "read_error"
)

func newConsistency() *consistency { return &consistency{V: 2, Sample: []consistencySample{}} }

// Total is the number of files that changed, were replaced, deleted or unreadable.
func (c *consistency) Total() int64 {
	return c.ChangedTotal + c.ReplacedTotal + c.DeletedTotal + c.ReadErrorTotal
}

func fp(size int64, id fileID) *fingerprint {
	f := fingerprintOf(size, id)
	return &f
}

func fingerprintOf(size int64, id fileID) fingerprint {
	return fingerprint{SizeBytes: size, MtimeNanos: id.MtimeNanos, Dev: id.Dev, Ino: id.Ino}
}

// observation is what the consistency check saw of one file after reading it; apply records it.
type observation struct {
	sample consistencySample
	kind   observed
}

type observed int

const (
	observedSame observed = iota
	observedReadError
	observedDeleted
	observedReplaced
	observedChanged
)

// observe compares the file before reading (through the open handle) with after, through the
// path and through the handle. It changes nothing, so a read-ahead worker may call it.
//
// While the path still names the inode that was read (same dev and inode), its lstat is that
// inode's stat, the same one fstat on the handle returns: the handle's fingerprint is taken from
// it, and the fstat (a system call per file) is left out. Only when the path is gone, names
// another file or cannot be stat'ed is the handle asked itself.
func observe(it item, f srcFile, before fileID, size int64, readErr error) observation {
	if readErr != nil {
		return observation{consistencySample{Path: it.arch, Before: fp(size, before), Reason: ReasonReadError, Error: readErr.Error()},
			observedReadError}
	}
	// Fingerprints are values until something is found: an unchanged file allocates none.
	var afterPath, afterHandle fingerprint
	var havePath, haveHandle, sameInode bool
	// With follow, the target is what was read; a link retargeted since counts as replaced.
	pfi, err := statAt(it.at, it.fsPath, it.follow)
	if err == nil {
		pid := statID(pfi)
		afterPath, havePath = fingerprintOf(pfi.Size(), pid), true
		sameInode = pid.HasID && before.HasID && pid.Dev == before.Dev && pid.Ino == before.Ino
	}
	if sameInode {
		afterHandle, haveHandle = afterPath, true
	} else if hfi, herr := f.Stat(); herr == nil {
		afterHandle, haveHandle = fingerprintOf(hfi.Size(), statID(hfi)), true
	}
	var reason string
	var kind observed
	switch {
	case errors.Is(err, fs.ErrNotExist):
		reason, kind = ReasonStatAfterMissing, observedDeleted
	case havePath && !sameInode && statID(pfi).HasID && before.HasID:
		reason, kind = ReasonFileIDChanged, observedReplaced
	case haveHandle && afterHandle.SizeBytes != size:
		reason, kind = ReasonSizeChanged, observedChanged
	case haveHandle && afterHandle.MtimeNanos != before.MtimeNanos:
		reason, kind = ReasonMtimeChanged, observedChanged
	default:
		return observation{kind: observedSame}
	}
	s := consistencySample{Path: it.arch, Reason: reason, Before: fp(size, before)}
	if havePath {
		s.AfterPath = &afterPath
	}
	if haveHandle {
		s.AfterHandle = &afterHandle
	}
	return observation{s, kind}
}

// apply counts and samples what observe saw.
func (c *consistency) apply(o observation) {
	if c == nil {
		return
	}
	switch o.kind {
	case observedSame:
		return
	case observedReadError:
		c.ReadErrorTotal++
	case observedDeleted:
		c.DeletedTotal++
	case observedReplaced:
		c.ReplacedTotal++
	case observedChanged:
		c.ChangedTotal++
	}
	c.record(o.sample)
}

// Warnings for objects the walk listed that were gone before they could be read.
const (
	msgVanished    = "vanished before it was read; not in this snapshot"
	msgDirVanished = "directory vanished before it was listed; its contents are not in this snapshot"
)

// vanished records an object the walk listed that was gone before it could be read. It is a
// warning naming the path, never an error (nothing was unreadable, so fail_fast goes on), and a
// deletion in the consistency report, so the consistency policy decides whether the run fails.
// before is the walk's Lstat, nil when the object was gone before that.
func vanished(issues *fsIssues, cons *consistency, arch string, before fs.FileInfo, err error, msg string) {
	issues.warn(arch, msg)
	cons.deleted(arch, before, err)
}

// deleted counts an object gone before it was read as stat_after_missing: the reason the spec
// gives for deletions. c is nil for sources without consistency tracking (sqlite).
func (c *consistency) deleted(arch string, before fs.FileInfo, err error) {
	if c == nil {
		return
	}
	c.DeletedTotal++
	s := consistencySample{Path: arch, Reason: ReasonStatAfterMissing, Error: err.Error()}
	if before != nil {
		s.Before = fp(before.Size(), statID(before))
	}
	c.record(s)
}

func (c *consistency) record(s consistencySample) {
	if len(c.Sample) < maxSamples {
		c.Sample = append(c.Sample, s)
	} else {
		c.SampleTruncated = true
	}
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
