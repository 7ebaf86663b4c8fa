package restore_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// publish writes payload split at partSize as a complete run on a localdir target, with a
// manifest built here (the way a third-party tool following docs/backup-format.md would).
func publish(t *testing.T, payloadParts [][]byte, encryption, key string) (*localdir.Target, string) {
	t.Helper()
	return publishIndexed(t, payloadParts, encryption, key, nil)
}

// publishIndexed is publish with an entries index made of entries (none when nil).
func publishIndexed(t *testing.T, payloadParts [][]byte, encryption, key string, entries []format.Entry) (*localdir.Target, string) {
	t.Helper()
	tg := newLocalTarget(t)
	runID := uuid.NewString()
	run := targets.RunRef{JobID: jobID, RunID: runID}
	m := format.Manifest{FormatVersion: 1, JobID: jobID, RunID: runID, StartedAt: "2025-01-01T00:00:00Z", EndedAt: "2025-01-01T00:00:01Z",
		Pipeline:   format.Pipeline{Format: "archive_v1", Tar: "pax", Compression: "zstd", Encryption: encryption, EncryptionKey: key, SplitBytes: 1 << 20},
		EntryIndex: format.EntryIndex{Name: targets.EntriesName}}
	for i, p := range payloadParts {
		name := format.PartName(i + 1)
		sum := blake3.Sum256(p)
		m.Artifacts = append(m.Artifacts, format.Part{Name: name, Size: int64(len(p)), HashAlg: "blake3", Hash: hex.EncodeToString(sum[:])})
		put(t, tg, run, name, p)
	}
	if entries != nil {
		var idx bytes.Buffer
		for _, e := range entries {
			if err := e.AppendLine(&idx); err != nil {
				t.Fatal(err)
			}
		}
		put(t, tg, run, targets.EntriesName, zst(t, idx.Bytes()))
		m.EntryIndex.Count = int64(len(entries))
	}
	mb, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	put(t, tg, run, targets.ManifestName, mb)
	put(t, tg, run, targets.CompleteName, []byte("{}"))
	return tg, runID
}

func put(t *testing.T, tg targets.Target, run targets.RunRef, name string, b []byte) {
	t.Helper()
	if _, err := tg.Put(context.Background(), run, name, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

type tarEntry struct {
	hdr  tar.Header
	body string
}

func makeTar(t *testing.T, format tar.Format, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Format = format
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1_600_000_000, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t *testing.T, b []byte) []byte {
	t.Helper()
	enc, _ := zstd.NewWriter(nil)
	return enc.EncodeAll(b, nil)
}

func restoreRun(t *testing.T, tg targets.Target, runID string, keys restore.IdentityProvider, mutate func(*restore.Request)) (restore.Result, string, error) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "dest")
	req := restore.Request{JobID: jobID, RunID: runID, Target: tg, Destination: dest,
		StagingDir: filepath.Join(t.TempDir(), "rs"), Keys: keys, Logger: testLogger(t)}
	if mutate != nil {
		mutate(&req)
	}
	res, err := restore.Restore(context.Background(), req)
	return res, req.Destination, err
}

func TestMaliciousArchivesAreRefused(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		reason  string
	}{
		{"Absolute", []tarEntry{{tar.Header{Name: filepath.Join(outside, "abs.txt")}, "x"}}, "absolute"},
		{"DotDot", []tarEntry{{tar.Header{Name: "a/../../escape.txt"}, "x"}}, ".."},
		{"SymlinkThenWrite", []tarEntry{
			{tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: outside}, ""},
			{tar.Header{Name: "evil/pwned.txt"}, "x"},
		}, "symlink"},
		{"SymlinkChain", []tarEntry{
			{tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
			{tar.Header{Name: "d/up", Typeflag: tar.TypeSymlink, Linkname: ".."}, ""},
			{tar.Header{Name: "d/up/up2", Typeflag: tar.TypeSymlink, Linkname: outside}, ""},
			{tar.Header{Name: "d/up/up2/pwned.txt"}, "x"},
		}, "symlink"},
		{"HardlinkEscape", []tarEntry{{tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}, ""}}, ".."},
		{"HardlinkAbsolute", []tarEntry{{tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}, ""}}, "absolute"},
		{"HardlinkThroughSymlink", []tarEntry{
			{tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, ""},
			{tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "s/passwd"}, ""},
		}, "symlink"},
		{"HardlinkToSymlinkOutside", []tarEntry{
			{tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: outside}, ""},
			{tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "s"}, ""},
		}, "not a regular file"},
		{"Device", []tarEntry{{tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, ""}}, "unsupported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			entries := append([]tarEntry{{tar.Header{Name: "safe.txt"}, "safe"}}, tc.entries...)
			tg, runID := publish(t, [][]byte{zst(t, makeTar(t, tar.FormatPAX, entries))}, "none", "")
			ev := &testtool.Events{}
			res, dest, err := restoreRun(t, tg, runID, nil, func(r *restore.Request) { r.Events = ev })
			var re *restore.Error
			if !errors.As(err, &re) || re.Code != restore.CodeUnsafeEntries {
				t.Fatalf("err = %v, want unsafe_entries", err)
			}
			if res.Refused == 0 || !strings.Contains(res.RefusedSample[len(res.RefusedSample)-1].Reason, tc.reason) {
				t.Fatalf("refusals %+v, want reason with %q", res.RefusedSample, tc.reason)
			}
			if ev.Find("unsafe_entries") == nil {
				t.Fatal("no unsafe_entries event")
			}
			if b, err := os.ReadFile(filepath.Join(dest, "safe.txt")); err != nil || string(b) != "safe" {
				t.Fatalf("safe entry not restored: %v", err)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 0 {
				t.Fatalf("something was written outside the destination: %v", ents)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dest), "escape.txt")); err == nil {
				t.Fatal("escape.txt written beside the destination")
			}
		})
	}
}

func TestRestoreAcceptsGNUHeaders(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("n", 150) + "/file.txt" // needs a GNU long-name record
	payload := zst(t, makeTar(t, tar.FormatGNU, []tarEntry{
		{tar.Header{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o700}, ""},
		{tar.Header{Name: "dir/a.txt", Mode: 0o600}, "gnu"},
		{tar.Header{Name: long}, "long"},
	}))
	tg, runID := publish(t, [][]byte{payload}, "none", "")
	_, dest, err := restoreRun(t, tg, runID, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "dir", "a.txt")); string(b) != "gnu" {
		t.Fatal("gnu entry not restored")
	}
	if b, _ := os.ReadFile(filepath.Join(dest, long)); string(b) != "long" {
		t.Fatal("long gnu name not restored")
	}
	if fi, _ := os.Stat(filepath.Join(dest, "dir")); fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", fi.Mode())
	}
}

func TestDamagedPartsAreNamed(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	testtool.WriteFile(t, filepath.Join(src, "r.bin"), testtool.RandBytes(3<<20, 5), 0o644, time.Now())
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		reason string
	}{
		{"Corrupted", func(t *testing.T, dir string) {
			p := filepath.Join(dir, format.PartName(2))
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			os.WriteFile(p, b, 0o644)
		}, "hash_mismatch"},
		{"Missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, format.PartName(2))) }, "missing"},
		{"Truncated", func(t *testing.T, dir string) { os.Truncate(filepath.Join(dir, format.PartName(2)), 1000) }, "size_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg := newLocalTarget(t)
			b := runBackup(t, tg, fsSpec(t, nil, src), nil)
			dir, _ := tg.RunDir(targets.RunRef{JobID: jobID, RunID: b.runID})
			tc.damage(t, dir)
			_, _, err := restoreRun(t, tg, b.runID, nil, nil)
			var pe *restore.PartError
			if !errors.As(err, &pe) || pe.Part != format.PartName(2) || pe.Reason != tc.reason {
				t.Fatalf("err = %v, want %s on %s", err, tc.reason, format.PartName(2))
			}
			if !strings.Contains(err.Error(), format.PartName(2)) {
				t.Fatalf("message does not name the part: %v", err)
			}
		})
	}
}

// TestStandardToolsInterop restores a snapshot made with tar | zstd | age | split, and reads
// one of ours back with the same tools.
func TestStandardToolsInterop(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"tar", "zstd", "age", "age-keygen", "split"} {
		testtool.Require(t, tool)
	}
	work := t.TempDir()
	keyFile := filepath.Join(work, "key.txt")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = work
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, errb.String())
		}
		return out.String()
	}
	run("age-keygen", "-o", keyFile)
	keyText, _ := os.ReadFile(keyFile)
	parsed, err := age.ParseIdentities(bytes.NewReader(keyText))
	if err != nil || len(parsed) != 1 {
		t.Fatalf("parse age key: %v", err)
	}
	keys := &testtool.AgeKeys{}
	keys.Set("cli", parsed[0].(*age.X25519Identity))

	src := filepath.Join(work, "tree")
	testtool.BuildTree(t, src, 1<<20)
	recipient := strings.TrimSpace(run("age-keygen", "-y", keyFile))
	run("sh", "-c", fmt.Sprintf("tar --format=pax -C %s -cf - . | zstd -3 -q -c | age -r %s | split -b 1048576 -a 6 --numeric-suffixes=1 - payload.part", src, recipient))
	var parts [][]byte
	for i := 1; ; i++ {
		b, err := os.ReadFile(filepath.Join(work, format.PartName(i)))
		if err != nil {
			break
		}
		parts = append(parts, b)
	}
	if len(parts) < 2 {
		t.Fatalf("split made %d parts", len(parts))
	}
	tg, runID := publish(t, parts, "age", "cli")
	_, dest, err := restoreRun(t, tg, runID, keys, nil)
	if err != nil {
		t.Fatalf("restore CLI-made snapshot: %v", err)
	}
	testtool.CompareTrees(t, src, dest, true)

	// Ours, read by the CLI.
	tg2 := newLocalTarget(t)
	spec := fsSpec(t, nil, src)
	spec.Pipeline.Encryption.Type, spec.Pipeline.Encryption.KeyName = "age_x25519", "cli"
	b := runBackup(t, tg2, spec, keys)
	dir, _ := tg2.RunDir(targets.RunRef{JobID: jobID, RunID: b.runID})
	listing := run("sh", "-c", fmt.Sprintf("cat %s/payload.part* | age -d -i %s | zstd -d -q | tar -tf -", dir, keyFile))
	got := strings.Split(strings.TrimSpace(listing), "\n")
	for i := range got {
		got[i] = strings.TrimSuffix(got[i], "/")
	}
	var want []string
	idxOut := run("sh", "-c", fmt.Sprintf("zstd -d -q -c %s/entries.jsonl.zst | wc -l", dir))
	if strings.TrimSpace(idxOut) != fmt.Sprint(len(got)) {
		t.Fatalf("tar lists %d entries, index has %s", len(got), idxOut)
	}
	for _, p := range []string{"empty.txt", "hard/b.txt", "link-rel", "sparse.img", "ünïcødé/日本語ファイル.txt"} {
		want = append(want, arch(src)+"/"+p)
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Fatalf("tar listing lacks %s:\n%s", w, listing)
		}
	}
}

func arch(p string) string { return strings.TrimPrefix(filepath.Clean(p), "/") }
