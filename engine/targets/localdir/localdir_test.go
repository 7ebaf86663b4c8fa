package localdir_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	targettest.Run(t, func(t *testing.T) targets.Target {
		return newTarget(t, base)
	})
}

func newTarget(t *testing.T, base string) *localdir.Target {
	t.Helper()
	tg, err := localdir.New(base, localdir.WithLogger(zerolog.New(zerolog.NewTestWriter(t))))
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	return tg
}

type testBundle struct {
	base string
	tg   *localdir.Target
	run  targets.RunRef
	dir  string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	base := filepath.Join(t.TempDir(), "backups")
	tg := newTarget(t, base)
	run := targettest.NewRun(t)
	return &testBundle{base: base, tg: tg, run: run, dir: filepath.Join(base, run.JobID, run.RunID)}
}

func TestNewRejectsBadBase(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"", "  ", "relative/dir", "./x"} {
		_, err := localdir.New(base)
		if targets.KindOf(err) != targets.KindConfig {
			t.Errorf("New(%q) = %v, want a config error", base, err)
		}
	}
}

func TestModesAndLayout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	targettest.Put(t, b.tg, b.run, "payload.part000001", 1, 10)
	for _, p := range []string{b.base, filepath.Dir(b.dir), b.dir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v, want 0700", p, fi.Mode().Perm())
		}
	}
	fi, err := os.Stat(filepath.Join(b.dir, "payload.part000001"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	if got := b.tg.Location(b.run); got != b.dir {
		t.Errorf("Location = %q, want %q", got, b.dir)
	}
	if r := b.tg.Redacted(); r.Type != "local_dir" || string(r.JSON()) != `{"type":"local_dir","base_dir":"`+b.base+`"}` {
		t.Errorf("Redacted = %+v", r)
	}
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("run dir holds %d entries, want only the part (no .partial left)", len(entries))
	}
}

func TestStalePartialIsReplaced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	targettest.Put(t, b.tg, b.run, targets.ManifestName, 1, 5)
	// A crash mid-write leaves a .partial with the expected size: it must not count.
	stale := filepath.Join(b.dir, "payload.part000001.partial")
	if err := os.WriteFile(stale, bytes.Repeat([]byte{'x'}, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	if targettest.Put(t, b.tg, b.run, "payload.part000001", 2, 100) {
		t.Fatal("a stale .partial made Put skip")
	}
	targettest.Expect(t, b.tg, b.run, "payload.part000001", 2, 100)
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale partial still there: %v", err)
	}
}

func TestPutFromFileAndLongerBody(t *testing.T) {
	t.Parallel()
	b := setup(t)
	src := filepath.Join(t.TempDir(), "part")
	content := targettest.NewContent(7, 20<<20)
	data := make([]byte, 20<<20)
	if _, err := content.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// An *os.File body goes through copy_file_range in 8 MiB chunks.
	if _, err := b.tg.Put(context.Background(), b.run, "payload.part000001", f, 20<<20); err != nil {
		t.Fatal(err)
	}
	targettest.Expect(t, b.tg, b.run, "payload.part000001", 7, 20<<20)
	// Only size bytes are taken from a longer body.
	if _, err := b.tg.Put(context.Background(), b.run, "payload.part000002", f, 1000); err != nil {
		t.Fatal(err)
	}
	targettest.Expect(t, b.tg, b.run, "payload.part000002", 7, 1000)
}

func TestCleanupLeavesForeignDirectories(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(b.dir, "holiday.jpg")
	if err := os.WriteFile(foreign, []byte("not a backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := b.tg.CleanupRun(context.Background(), b.run)
	if err != nil || res != targets.CleanupSkipNotFound {
		t.Fatalf("cleanup of a foreign dir = %q, %v; want skip_not_found", res, err)
	}
	_, err = b.tg.DeleteRun(context.Background(), b.run)
	if targets.KindOf(err) != targets.KindConfig {
		t.Fatalf("delete of a foreign dir: %v; want a config error", err)
	}
	var te *targets.Error
	if !errors.As(err, &te) || te.Code != "local_dir_config" || te.Hint == "" {
		t.Fatalf("delete of a foreign dir: %#v; want code local_dir_config with a hint", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("foreign file gone: %v", err)
	}
}

func TestCleanupMarkers(t *testing.T) {
	t.Parallel()
	for _, marker := range []string{targets.ManifestName, targets.EntriesName, "payload.part000003", "payload.part000001.partial"} {
		t.Run(marker, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			if err := os.MkdirAll(b.dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(b.dir, marker), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := b.tg.CleanupRun(context.Background(), b.run)
			if err != nil || res != targets.CleanupDeleted {
				t.Fatalf("cleanup = %q, %v; want deleted", res, err)
			}
			if _, err := os.Stat(filepath.Dir(b.dir)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("empty job dir left behind: %v", err)
			}
		})
	}
}

func TestDeleteEmptyRunDir(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if res, err := b.tg.DeleteRun(context.Background(), b.run); err != nil || res != targets.DeleteDeleted {
		t.Fatalf("delete of an empty run dir = %q, %v", res, err)
	}
}

// Symlinks inside the base must never lead an operation outside it.
func TestSymlinksAreNotFollowed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, level := range []string{"job", "run"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			outside := t.TempDir()
			victim := filepath.Join(outside, "payload.part000001")
			if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			// run: <base>/<job>/<run> → outside, which looks like a run.
			// job: <base>/<job> → outside, whose <run> subdirectory looks like a run.
			link := b.dir
			if level == "job" {
				link = filepath.Dir(b.dir)
				victim = filepath.Join(outside, b.run.RunID, "payload.part000001")
				if err := os.MkdirAll(filepath.Dir(victim), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, link); err != nil {
				t.Fatal(err)
			}
			if res, err := b.tg.CleanupRun(ctx, b.run); err != nil || res != targets.CleanupSkipNotFound {
				t.Fatalf("cleanup through a symlink = %q, %v; want skip_not_found", res, err)
			}
			if _, err := b.tg.DeleteRun(ctx, b.run); targets.KindOf(err) != targets.KindConfig {
				t.Fatalf("delete through a symlink: %v; want a config error", err)
			}
			if _, err := b.tg.Put(ctx, b.run, "payload.part000002", bytes.NewReader([]byte("x")), 1); targets.KindOf(err) != targets.KindConfig {
				t.Fatalf("put through a symlink: %v; want a config error", err)
			}
			if _, err := b.tg.Size(ctx, b.run, "payload.part000001"); targets.KindOf(err) != targets.KindConfig {
				t.Fatalf("size through a symlink: %v; want a config error", err)
			}
			if got, err := os.ReadFile(victim); err != nil || string(got) != "precious" {
				t.Fatalf("file outside the base changed: %q, %v", got, err)
			}
		})
	}
}

func TestSymlinkedFileIsNotOpened(t *testing.T) {
	t.Parallel()
	b := setup(t)
	targettest.Put(t, b.tg, b.run, "payload.part000001", 1, 3)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(b.dir, "payload.part000002")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.tg.Open(context.Background(), b.run, "payload.part000002"); targets.KindOf(err) != targets.KindConfig {
		t.Fatalf("open of a symlink: %v; want a config error", err)
	}
	if _, err := b.tg.Size(context.Background(), b.run, "payload.part000002"); targets.KindOf(err) != targets.KindConfig {
		t.Fatalf("size of a symlink: %v; want a config error", err)
	}
}

// A real full file system: ENOSPC must come back as storage_full with its stable code, and
// nothing may be left under the final name. Needs root to mount a tiny tmpfs.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	tg := newTarget(t, mnt)
	run := targettest.NewRun(t)
	_, err := tg.Put(context.Background(), run, "payload.part000001", targettest.NewContent(1, 1<<20), 1<<20)
	var te *targets.Error
	if !errors.As(err, &te) || te.Kind != targets.KindStorageFull || te.Code != "local_dir_storage_full" || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("put onto a full disk: %#v; want storage_full / local_dir_storage_full wrapping ENOSPC", err)
	}
	if !strings.Contains(te.Hint, "full") {
		t.Errorf("hint %q does not say the disk is full", te.Hint)
	}
	targettest.ExpectMissing(t, tg, run, "payload.part000001")
	entries, _ := os.ReadDir(filepath.Join(mnt, run.JobID, run.RunID))
	for _, e := range entries {
		t.Errorf("left behind after ENOSPC: %s", e.Name())
	}
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.tg.Size(context.Background(), b.run, "payload.part000009")
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, targets.ErrNotExist) {
		t.Fatalf("missing file error %v matches neither fs.ErrNotExist nor targets.ErrNotExist", err)
	}
	if got := err.Error(); !strings.HasPrefix(got, "size payload.part000009: local_dir_not_found: ") {
		t.Errorf("error text %q", got)
	}
}
