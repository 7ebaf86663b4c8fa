package testtool

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// TreeTime is the modification time BuildTree gives its files and directories.
var TreeTime = time.Date(2024, 3, 5, 7, 9, 11, 123456789, time.UTC)

// BuildTree writes a source tree with the shapes that break archivers under root: many small
// files, a random and a compressible file of about big bytes each, empty files and directories,
// odd permissions, Unicode and 255-byte names, a path longer than 2000 bytes, symlinks (relative,
// absolute, dangling, to a directory), a hard link pair and a sparse file. Contents are
// deterministic.
func BuildTree(t testing.TB, root string, big int) {
	t.Helper()
	base := TreeTime
	for i := 0; i < 120; i++ {
		WriteFile(t, filepath.Join(root, "small", fmt.Sprintf("d%02d", i%7), fmt.Sprintf("f%03d.txt", i)),
			RandBytes(i*37%5000, uint64(i)), 0o644, base.Add(time.Duration(i)*time.Second))
	}
	WriteFile(t, filepath.Join(root, "big", "random.bin"), RandBytes(big, 99), 0o600, base)
	WriteFile(t, filepath.Join(root, "big", "text.log"), compressible(big/2), 0o640, base)
	WriteFile(t, filepath.Join(root, "empty.txt"), nil, 0o444, base)
	WriteFile(t, filepath.Join(root, "exec.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755, base)
	for _, d := range []string{"emptydir", "nested/empty/deeper"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	WriteFile(t, filepath.Join(root, "ünïcødé", "日本語ファイル.txt"), []byte("こんにちは"), 0o644, base)
	WriteFile(t, filepath.Join(root, strings.Repeat("L", 251)+".txt"), []byte("long name"), 0o644, base)
	deep := root
	for i := 0; i < 12; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("%03d-%s", i, strings.Repeat("d", 180)))
	}
	WriteFile(t, filepath.Join(deep, "leaf.txt"), []byte("deep"), 0o644, base)
	for link, target := range map[string]string{"link-rel": "exec.sh", "link-abs": "/etc/hostname",
		"link-dangling": "does/not/exist", "link-dir": "small"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	WriteFile(t, filepath.Join(root, "hard", "a.txt"), []byte("shared content"), 0o644, base)
	if err := os.Link(filepath.Join(root, "hard", "a.txt"), filepath.Join(root, "hard", "b.txt")); err != nil {
		t.Fatal(err)
	}
	sp := filepath.Join(root, "sparse.img")
	f, err := os.Create(sp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("middle"), int64(big)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(big) * 2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(sp, base, base); err != nil {
		t.Fatal(err)
	}
	// Directory modes and mtimes last, after their content was written.
	if err := os.Chmod(filepath.Join(root, "nested"), 0o751); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"emptydir", "nested/empty/deeper", "nested/empty", "nested", "small", "big", "hard"} {
		if err := os.Chtimes(filepath.Join(root, d), base, base); err != nil {
			t.Fatal(err)
		}
	}
}

// WriteFile writes data to p (creating parents) with mode and mtime.
func WriteFile(t testing.TB, p string, data []byte, mode fs.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// RandBytes returns n incompressible bytes determined by seed.
func RandBytes(n int, seed uint64) []byte {
	r := mrand.New(mrand.NewPCG(seed, seed*7+1))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func compressible(n int) []byte {
	line := []byte("the quick brown fox jumps over the lazy dog 0123456789\n")
	return bytes.Repeat(line, n/len(line)+1)[:n]
}

// CompareTrees checks that got mirrors want byte for byte and by metadata: the same paths, kinds,
// permissions and modification times to the second (files, directories; archive_v1 headers carry
// whole seconds, as the original's do), contents and symlink targets, and nothing extra. With
// hardlinks, paths sharing an inode in want must share one in got.
func CompareTrees(t testing.TB, want, got string, hardlinks bool) {
	t.Helper()
	n := 0
	inodes := map[uint64]uint64{}
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		q := filepath.Join(got, rel)
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(q)
		if err != nil {
			t.Errorf("%s missing in restore: %v", rel, err)
			return nil
		}
		n++
		if wi.Mode().Type() != gi.Mode().Type() {
			t.Errorf("%s: type %v, want %v", rel, gi.Mode().Type(), wi.Mode().Type())
			return nil
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wl, _ := os.Readlink(p)
			gl, _ := os.Readlink(q)
			if wl != gl {
				t.Errorf("%s: symlink -> %q, want %q", rel, gl, wl)
			}
			return nil
		case wi.Mode().IsRegular():
			if wh, gh := FileHash(t, p), FileHash(t, q); wh != gh {
				t.Errorf("%s: content differs", rel)
			}
			if hardlinks {
				ws, gs := wi.Sys().(*syscall.Stat_t), gi.Sys().(*syscall.Stat_t)
				if ws.Nlink > 1 {
					if prev, ok := inodes[ws.Ino]; ok && prev != gs.Ino {
						t.Errorf("%s: hard link not preserved", rel)
					}
					inodes[ws.Ino] = gs.Ino
				}
			}
		}
		if rel != "." {
			if wi.Mode().Perm() != gi.Mode().Perm() {
				t.Errorf("%s: mode %v, want %v", rel, gi.Mode().Perm(), wi.Mode().Perm())
			}
			if wi.ModTime().Unix() != gi.ModTime().Unix() || gi.ModTime().Nanosecond() != 0 && !wi.ModTime().Equal(gi.ModTime()) {
				t.Errorf("%s: mtime %v, want %v to the second", rel, gi.ModTime(), wi.ModTime())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m := 0
	_ = filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			m++
		}
		return nil
	})
	if m != n {
		t.Errorf("restore has %d paths, source %d", m, n)
	}
}

// FileHash is the BLAKE3 hex digest of a file.
func FileHash(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := blake3.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Corrupt flips one bit of the file at p, a third of the way in, keeping its size: damage only
// a hash check notices.
func Corrupt(t testing.TB, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	off := fi.Size() / 3
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// ArchivePath is where a source path lands under a restore destination: archive paths are the
// absolute source path without its leading slash.
func ArchivePath(dest, src string) string {
	return filepath.Join(dest, strings.TrimPrefix(filepath.Clean(src), "/"))
}

// WholeSecondMtimes truncates the modification times under root (not of symlinks) to whole
// seconds: raw_tree_v1 records mtime in unix seconds, so a tree compared after its round trip
// must not have sub-second times.
func WholeSecondMtimes(t testing.TB, root string) {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mt := fi.ModTime().Truncate(time.Second)
		return os.Chtimes(p, mt, mt)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Deepest first, after the files: setting a time changes no directory's mtime, but this
	// order keeps that true even if it did.
	for i := len(dirs) - 1; i >= 0; i-- {
		fi, err := os.Stat(dirs[i])
		if err != nil {
			t.Fatal(err)
		}
		mt := fi.ModTime().Truncate(time.Second)
		if err := os.Chtimes(dirs[i], mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}
