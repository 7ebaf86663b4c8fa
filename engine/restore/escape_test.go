package restore_test

import (
	"archive/tar"
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/testtool"
)

func wantRefused(t *testing.T, res restore.Result, err error, path, reason string) {
	t.Helper()
	var re *restore.Error
	if !errors.As(err, &re) || re.Code != restore.CodeUnsafeEntries {
		t.Fatalf("err = %v, want unsafe_entries", err)
	}
	for _, r := range res.RefusedSample {
		if r.Path == path && strings.Contains(r.Reason, reason) {
			return
		}
	}
	t.Fatalf("refusals %+v, want %s refused with %q", res.RefusedSample, path, reason)
}

// TestDirectoryReplacedBySymlinkIsNotFollowed is security issue 11 item 1: a directory entry
// x/, then a symlink x to something outside. The end-of-restore pass that applies directory
// modes and times used to chmod/chtimes through the symlink (a file outside went from 0600 to
// 0777), and the restore said success.
func TestDirectoryReplacedBySymlinkIsNotFollowed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		link func(o testtool.OutsideFile) string
	}{
		{"ToFile", func(o testtool.OutsideFile) string { return o.Path }},
		{"ToDirectory", func(o testtool.OutsideFile) string { return o.Dir }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := testtool.NewOutsideFile(t)
			payload := zst(t, makeTar(t, tar.FormatPAX, []tarEntry{
				{tar.Header{Name: "safe.txt"}, "safe"},
				{tar.Header{Name: "x/", Typeflag: tar.TypeDir, Mode: 0o777, ModTime: time.Unix(1_700_000_000, 0)}, ""},
				{tar.Header{Name: "x", Typeflag: tar.TypeSymlink, Linkname: tc.link(o)}, ""},
			}))
			entries := []format.Entry{format.FileEntry("safe.txt", 4, "00"), {Path: "x", Kind: format.KindDir}}
			tg, runID := publishIndexed(t, [][]byte{payload}, "none", "", entries)

			t.Run("Restore", func(t *testing.T) {
				res, dest, err := restoreRun(t, tg, runID, nil, nil) // default policy: overwrite
				wantRefused(t, res, err, "x", "symlink")
				o.Untouched(t)
				if b, _ := os.ReadFile(filepath.Join(dest, "safe.txt")); string(b) != "safe" {
					t.Fatal("safe entry not restored")
				}
			})
			t.Run("Verify", func(t *testing.T) {
				_, err := restore.Verify(context.Background(), restore.VerifyRequest{
					JobID: jobID, RunID: runID, Target: tg, ScratchDir: filepath.Join(t.TempDir(), "scratch")})
				var re *restore.Error
				if !errors.As(err, &re) || re.Code != restore.CodeUnsafeEntries {
					t.Fatalf("verify err = %v, want unsafe_entries", err)
				}
				o.Untouched(t)
			})
		})
	}
}

// TestSymlinkPlantedAsParentBetweenEntries: x/ as a directory, then x as a symlink outside,
// then x/file, x/sub/ and a hard link under x. Nothing may be written through the link.
func TestSymlinkPlantedAsParentBetweenEntries(t *testing.T) {
	t.Parallel()
	o := testtool.NewOutsideFile(t)
	payload := zst(t, makeTar(t, tar.FormatPAX, []tarEntry{
		{tar.Header{Name: "x/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		{tar.Header{Name: "x", Typeflag: tar.TypeSymlink, Linkname: o.Dir}, ""},
		{tar.Header{Name: "x/file"}, "pwned"},
		{tar.Header{Name: "x/sub/", Typeflag: tar.TypeDir, Mode: 0o777}, ""},
		{tar.Header{Name: "x/secret", Typeflag: tar.TypeSymlink, Linkname: "/"}, ""},
		{tar.Header{Name: "a.txt"}, "a"},
		{tar.Header{Name: "x/h", Typeflag: tar.TypeLink, Linkname: "a.txt"}, ""},
		{tar.Header{Name: "h2", Typeflag: tar.TypeLink, Linkname: "x/secret"}, ""},
	}))
	tg, runID := publish(t, [][]byte{payload}, "none", "")
	res, _, err := restoreRun(t, tg, runID, nil, nil)
	wantRefused(t, res, err, "x/file", "parent x is a symlink")
	wantRefused(t, res, err, "x/h", "parent x is a symlink")
	wantRefused(t, res, err, "h2", "parent x is a symlink")
	o.Untouched(t)
}

// TestSpecialBitsStripped is security issue 11 item 8: setuid, setgid and sticky bits are not
// restored unless the request keeps them.
func TestSpecialBitsStripped(t *testing.T) {
	t.Parallel()
	payload := zst(t, makeTar(t, tar.FormatPAX, []tarEntry{
		{tar.Header{Name: "shared/", Typeflag: tar.TypeDir, Mode: 0o3775}, ""},
		{tar.Header{Name: "shared/su", Mode: 0o6755}, "#!/bin/sh\n"},
		{tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, ""},
	}))
	tg, runID := publish(t, [][]byte{payload}, "none", "")
	for _, tc := range []struct {
		name             string
		keep             bool
		file, dir, stick fs.FileMode
	}{
		{"Default", false, 0o755, fs.ModeDir | 0o775, fs.ModeDir | 0o777},
		{"Kept", true, fs.ModeSetuid | fs.ModeSetgid | 0o755, fs.ModeDir | fs.ModeSetgid | fs.ModeSticky | 0o775, fs.ModeDir | fs.ModeSticky | 0o777},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, dest, err := restoreRun(t, tg, runID, nil, func(r *restore.Request) { r.KeepSpecialBits = tc.keep })
			if err != nil {
				t.Fatal(err)
			}
			for p, want := range map[string]fs.FileMode{"shared/su": tc.file, "shared": tc.dir, "tmp": tc.stick} {
				fi, err := os.Lstat(filepath.Join(dest, p))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != want {
					t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
				}
			}
		})
	}
}

// The destination is checked when a restore is accepted and again on the directory the restore
// opens: a symlink to the data directory swapped into its path in between leads nowhere.
func TestDestinationSwappedForTheProtectedDirIsRefused(t *testing.T) {
	t.Parallel()
	payload := zst(t, makeTar(t, tar.FormatPAX, []tarEntry{{tar.Header{Name: "master.key", Mode: 0o600}, "planted"}}))
	tg, runID := publish(t, [][]byte{payload}, "none", "")
	data := t.TempDir()
	keyPath := filepath.Join(data, "master.key")
	if err := os.WriteFile(keyPath, []byte("real key"), 0o600); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	for _, tc := range []struct{ name, target string }{{"ToDataDir", data}, {"ToItsParent", filepath.Dir(data)}} {
		swapped := filepath.Join(parent, tc.name)
		if err := os.Symlink(tc.target, swapped); err != nil {
			t.Fatal(err)
		}
		_, _, err := restoreRun(t, tg, runID, nil, func(r *restore.Request) { r.Destination, r.ProtectedDir = swapped, data })
		var re *restore.Error
		if !errors.As(err, &re) || re.Code != restore.CodeDestination {
			t.Fatalf("%s: err = %v, want %s", tc.name, err, restore.CodeDestination)
		}
		if b, _ := os.ReadFile(keyPath); string(b) != "real key" {
			t.Fatalf("%s: master.key is now %q", tc.name, b)
		}
	}
	// An ordinary destination still restores.
	if _, dest, err := restoreRun(t, tg, runID, nil, func(r *restore.Request) { r.ProtectedDir = data }); err != nil {
		t.Fatal(err)
	} else if b, _ := os.ReadFile(filepath.Join(dest, "master.key")); string(b) != "planted" {
		t.Fatalf("restored %q", b)
	}
}

// TestManifestPartNamesStayInTheRun: a manifest from the target names its parts, and a local
// target's parts are read in place; a name like ../../file made the restore read (and report
// the size and hash of) any file the process could read.
func TestManifestPartNamesStayInTheRun(t *testing.T) {
	t.Parallel()
	payload := zst(t, makeTar(t, tar.FormatPAX, []tarEntry{{tar.Header{Name: "stolen.txt"}, "outside"}}))
	elsewhere := filepath.Join(t.TempDir(), "payload.part000001")
	if err := os.WriteFile(elsewhere, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := blake3.Sum256(payload)
	for _, tc := range []struct{ name, part string }{
		{"Traversal", "../../../../../../../.." + elsewhere},
		{"Sign", "payload.part+00001"},
		{"Short", "payload.part1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg, runID := publish(t, [][]byte{payload}, "none", "")
			run := targets.RunRef{JobID: jobID, RunID: runID}
			m := format.Manifest{FormatVersion: 1, JobID: jobID, RunID: runID,
				Pipeline:  format.Pipeline{Format: "archive_v1", Tar: "pax", Compression: "zstd", Encryption: "none"},
				Artifacts: []format.Part{{Name: tc.part, Size: int64(len(payload)), HashAlg: "blake3", Hash: hex.EncodeToString(sum[:])}}}
			b, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			dir, _ := tg.RunDir(run)
			if err := os.WriteFile(filepath.Join(dir, targets.ManifestName), b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, dest, err := restoreRun(t, tg, runID, nil, nil)
			var re *restore.Error
			if !errors.As(err, &re) || re.Code != restore.CodeManifest {
				t.Fatalf("err = %v, want manifest_invalid", err)
			}
			if _, err := os.Stat(filepath.Join(dest, "stolen.txt")); err == nil {
				t.Fatal("a file outside the run was read as a part")
			}
		})
	}
}
