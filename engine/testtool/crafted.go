package testtool

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/targets"
)

// CraftedEntry is one tar entry of a hand-made snapshot. Type 0 is a regular file holding Body.
type CraftedEntry struct {
	Name, Body, Link string
	Type             byte
	Mode             int64 // 0: 0644
}

// WriteCraftedSnapshot replaces whatever run directory runDir holds with an archive_v1 snapshot
// of entries, written in the on-target format the way a third-party tool following
// docs/backup-format.md would: one zstd tar part, entries.jsonl.zst, manifest.json and
// complete.json last. Tests use it to play someone who can write to a target.
func WriteCraftedSnapshot(t testing.TB, runDir, jobID, runID string, entries []CraftedEntry) {
	t.Helper()
	var tarBuf, idx bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Linkname: e.Link, Mode: e.Mode,
			ModTime: time.Unix(1_700_000_000, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.Body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			t.Fatal(err)
		}
		ie := format.Entry{Path: e.Name, Kind: format.KindDir}
		switch h.Typeflag {
		case tar.TypeReg:
			sum := blake3.Sum256([]byte(e.Body))
			ie = format.FileEntry(e.Name, h.Size, hex.EncodeToString(sum[:]))
		case tar.TypeSymlink:
			ie = format.Entry{Path: e.Name, Kind: format.KindSymlink, SymlinkTarget: &e.Link}
		}
		if err := ie.AppendLine(&idx); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	payload := enc.EncodeAll(tarBuf.Bytes(), nil)
	index := enc.EncodeAll(idx.Bytes(), nil)
	enc.Close()

	old, _ := filepath.Glob(filepath.Join(runDir, format.PartPrefix+"*"))
	for _, p := range append(old, filepath.Join(runDir, targets.CompleteName)) {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := blake3.Sum256(payload)
	m := format.Manifest{FormatVersion: format.FormatVersion, JobID: jobID, RunID: runID,
		StartedAt: "2025-01-01T00:00:00Z", EndedAt: "2025-01-01T00:00:01Z",
		Pipeline: format.Pipeline{Format: format.FormatArchiveV1, Tar: "pax", Compression: "zstd", Encryption: "none",
			SplitBytes: 1 << 20},
		Artifacts:  []format.Part{{Name: format.PartName(1), Size: int64(len(payload)), HashAlg: format.HashAlgBLAKE3, Hash: hex.EncodeToString(sum[:])}},
		EntryIndex: format.EntryIndex{Name: targets.EntriesName, Count: int64(len(entries))}}
	mb, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{format.PartName(1), payload}, {targets.EntriesName, index}, {targets.ManifestName, mb}, {targets.CompleteName, []byte("{}")}} {
		if err := os.WriteFile(filepath.Join(runDir, f.name), f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// OutsideFile is a file beside a restore's destination that a crafted snapshot tries to reach:
// a directory holding one file "secret", both 0700/0600 with an old mtime.
type OutsideFile struct {
	Dir, Path string
	MTime     time.Time
}

// NewOutsideFile makes an OutsideFile in a new temporary directory.
func NewOutsideFile(t testing.TB) OutsideFile {
	t.Helper()
	dir := t.TempDir()
	o := OutsideFile{Dir: dir, Path: filepath.Join(dir, "secret"), MTime: time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)}
	if err := os.WriteFile(o.Path, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{o.Path, dir} {
		if err := os.Chtimes(p, o.MTime, o.MTime); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// Untouched reports an error for anything that changed about the file or its directory.
func (o OutsideFile) Untouched(t testing.TB) {
	t.Helper()
	for p, mode := range map[string]os.FileMode{o.Path: 0o600, o.Dir: os.ModeDir | 0o700} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode || !fi.ModTime().Equal(o.MTime) {
			t.Errorf("%s outside the destination changed: mode %v mtime %v (want %v %v)", p, fi.Mode(), fi.ModTime(), mode, o.MTime)
		}
	}
	if ents, _ := os.ReadDir(o.Dir); len(ents) != 1 {
		t.Errorf("something was written outside the destination: %v", ents)
	}
	if b, _ := os.ReadFile(o.Path); string(b) != "secret" {
		t.Errorf("outside file rewritten: %q", b)
	}
}
