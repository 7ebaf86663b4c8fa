package restore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/rs/zerolog"
	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
)

const (
	jobID = "5b0f0c3e-6f7c-4a53-9d6f-0a8f2c1d9e01"
)

func newRunID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// memKeys is an in-memory age key store: one X25519 identity per name, created on first use.
type memKeys struct {
	mu  sync.Mutex
	ids map[string]*age.X25519Identity
}

func (k *memKeys) get(name string) (*age.X25519Identity, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ids == nil {
		k.ids = map[string]*age.X25519Identity{}
	}
	if id, ok := k.ids[name]; ok {
		return id, nil
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, err
	}
	k.ids[name] = id
	return id, nil
}

func (k *memKeys) Recipient(_ context.Context, name string) (age.Recipient, error) {
	id, err := k.get(name)
	if err != nil {
		return nil, err
	}
	return id.Recipient(), nil
}

func (k *memKeys) Identity(_ context.Context, name string) (age.Identity, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id, ok := k.ids[name]
	if !ok {
		return nil, errors.New("no such key")
	}
	return id, nil
}

// events records emitted events.
type events struct {
	mu   sync.Mutex
	list []event
}

type event struct {
	Level, Kind, Message string
	Fields               map[string]any
}

func (e *events) Emit(level, kind, msg string, fields map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, event{level, kind, msg, fields})
}

func (e *events) kinds() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.list {
		out = append(out, ev.Kind)
	}
	return out
}

func (e *events) find(kind string) *event {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.list {
		if e.list[i].Kind == kind {
			return &e.list[i]
		}
	}
	return nil
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewConsoleWriter(zerolog.ConsoleTestWriter(t))).Level(zerolog.WarnLevel)
}

func newLocalTarget(t *testing.T) *localdir.Target {
	t.Helper()
	tg, err := localdir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func fsSpec(t *testing.T, patch func(*jobspec.Spec), paths ...string) *jobspec.Spec {
	t.Helper()
	s, err := jobspec.Parse([]byte(`{"v":1,"type":"filesystem","source":{"paths":["/x"]},"target":{"type":"local_dir","base_dir":"/bk","part_size_bytes":1048576}}`))
	if err != nil {
		t.Fatal(err)
	}
	s.Filesystem.Paths = paths
	if patch != nil {
		patch(s)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

type backupResult struct {
	runID   string
	summary backup.Summary
	events  *events
}

func runBackup(t *testing.T, tg targets.Target, spec *jobspec.Spec, keys *memKeys) backupResult {
	t.Helper()
	res, err := tryBackup(t, tg, spec, keys)
	if err != nil {
		t.Fatalf("backup: %v (events %v)", err, res.events.kinds())
	}
	return res
}

func tryBackup(t *testing.T, tg targets.Target, spec *jobspec.Spec, keys *memKeys) (backupResult, error) {
	t.Helper()
	ev := &events{}
	runID := newRunID(t)
	var kp backup.KeyProvider
	if keys != nil {
		kp = keys
	}
	sum, err := backup.Run(context.Background(), backup.Request{
		JobID: jobID, RunID: runID, StartedAt: time.Now(), Spec: spec, Target: tg,
		StagingDir: filepath.Join(t.TempDir(), "staging"), Keys: kp, Events: ev, Logger: testLogger(t),
	})
	return backupResult{runID: runID, summary: sum, events: ev}, err
}

// tree builders

func writeFile(t *testing.T, p string, data []byte, mode fs.FileMode, mtime time.Time) {
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

func randBytes(n int, seed uint64) []byte {
	r := mrand.New(mrand.NewPCG(seed, seed*7+1))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func compressible(n int) []byte {
	line := []byte("the quick brown fox jumps over the lazy dog 0123456789\n")
	return bytes.Repeat(line, n/len(line)+1)[:n]
}

// buildTree makes a tree with the shapes that break archivers. Sizes scale with big.
func buildTree(t *testing.T, root string, big int) {
	t.Helper()
	base := time.Date(2024, 3, 5, 7, 9, 11, 123456789, time.UTC)
	for i := 0; i < 120; i++ {
		writeFile(t, filepath.Join(root, "small", fmt.Sprintf("d%02d", i%7), fmt.Sprintf("f%03d.txt", i)),
			randBytes(i*37%5000, uint64(i)), 0o644, base.Add(time.Duration(i)*time.Second))
	}
	writeFile(t, filepath.Join(root, "big", "random.bin"), randBytes(big, 99), 0o600, base)
	writeFile(t, filepath.Join(root, "big", "text.log"), compressible(big/2), 0o640, base)
	writeFile(t, filepath.Join(root, "empty.txt"), nil, 0o444, base)
	writeFile(t, filepath.Join(root, "exec.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755, base)
	for _, d := range []string{"emptydir", "nested/empty/deeper"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	// Unicode and a 255-byte component.
	writeFile(t, filepath.Join(root, "ünïcødé", "日本語ファイル.txt"), []byte("こんにちは"), 0o644, base)
	long := strings.Repeat("L", 251) + ".txt"
	writeFile(t, filepath.Join(root, long), []byte("long name"), 0o644, base)
	// A deep path of long components (> 2000 bytes).
	deep := root
	for i := 0; i < 12; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("%03d-%s", i, strings.Repeat("d", 180)))
	}
	writeFile(t, filepath.Join(deep, "leaf.txt"), []byte("deep"), 0o644, base)
	// Symlinks: relative, absolute, dangling, to a directory.
	mustSymlink(t, "exec.sh", filepath.Join(root, "link-rel"))
	mustSymlink(t, "/etc/hostname", filepath.Join(root, "link-abs"))
	mustSymlink(t, "does/not/exist", filepath.Join(root, "link-dangling"))
	mustSymlink(t, "small", filepath.Join(root, "link-dir"))
	// Hard links.
	writeFile(t, filepath.Join(root, "hard", "a.txt"), []byte("shared content"), 0o644, base)
	if err := os.Link(filepath.Join(root, "hard", "a.txt"), filepath.Join(root, "hard", "b.txt")); err != nil {
		t.Fatal(err)
	}
	// A sparse file: holes around some data.
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
	os.Chtimes(sp, base, base)
	// Directory modes and mtimes last, after their content was written.
	os.Chmod(filepath.Join(root, "nested"), 0o751)
	for _, d := range []string{"emptydir", "nested/empty/deeper", "nested/empty", "nested", "small"} {
		os.Chtimes(filepath.Join(root, d), base, base)
	}
}

func mustSymlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// compareTrees checks that got mirrors want: kinds, permissions, mtimes of files and
// directories, file contents, symlink targets. With hardlinks, paths that share an inode in
// want must share one in got.
func compareTrees(t *testing.T, want, got string, hardlinks bool) {
	t.Helper()
	n := 0
	inodes := map[uint64]uint64{} // want inode -> got inode
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
			if wh, gh := fileHash(t, p), fileHash(t, q); wh != gh {
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
			if !wi.ModTime().Equal(gi.ModTime()) {
				t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing extra in got.
	m := 0
	filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			m++
		}
		return nil
	})
	if m != n {
		t.Errorf("restore has %d paths, source %d", m, n)
	}
}

func fileHash(t *testing.T, p string) string {
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

// archRoot is where a source path lands under a restore destination.
func archRoot(dest, src string) string {
	return filepath.Join(dest, strings.TrimPrefix(filepath.Clean(src), "/"))
}

var timeZero = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func corrupt(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x01
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
