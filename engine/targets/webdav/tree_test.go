package webdav_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
)

// newTree is a Tree on the collection prefix below up's base, with recorded sleeps.
func newTree(t *testing.T, base, prefix string, up upstream) (*webdav.Tree, *targettest.Sleeps) {
	t.Helper()
	u, err := webdav.JoinURL(base, prefix)
	if err != nil {
		t.Fatalf("join %q: %v", prefix, err)
	}
	tg, s := newTarget(t, u, up, webdav.Options{})
	tr, ok := webdav.TreeOf(tg.Target)
	if !ok {
		t.Fatal("TreeOf does not see through the retrying wrapper")
	}
	return tr, s
}

// filesUnder lists every file below dir, relative and slash-separated.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestTreeRclone(t *testing.T) {
	t.Parallel()
	up := startRclone(t)
	ctx := context.Background()

	t.Run("WritesBelowPrefix", func(t *testing.T) {
		tr, _ := newTree(t, up.base, "/restores/one/", up)
		if !strings.HasSuffix(tr.URL(), "/restores/one/") {
			t.Fatalf("URL %s", tr.URL())
		}
		// The prefix and its missing parent are made.
		if err := tr.Mkcol(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if err := tr.Mkcol(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := tr.Mkcol(ctx, "a"); err != nil {
			t.Fatalf("second MKCOL of an existing collection: %v", err)
		}
		body := []byte("hello tree")
		if err := tr.Put(ctx, "a/x y.txt", bytes.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
		if n, err := tr.Size(ctx, "a/x y.txt"); err != nil || n != int64(len(body)) {
			t.Fatalf("size = %d, %v", n, err)
		}
		if got := onDisk(t, up, "restores", "one", "a", "x y.txt"); !bytes.Equal(got, body) {
			t.Fatalf("on disk %q", got)
		}
		if err := tr.Delete(ctx, "a/x y.txt"); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Size(ctx, "a/x y.txt"); !errors.Is(err, targets.ErrNotExist) {
			t.Fatalf("size after delete: %v", err)
		}
		if err := tr.Delete(ctx, "a/x y.txt"); err != nil {
			t.Fatalf("deleting a missing file: %v", err)
		}
	})

	t.Run("NothingLeavesThePrefix", func(t *testing.T) {
		tr, _ := newTree(t, up.base, "jail", up)
		if err := tr.Mkcol(ctx, ""); err != nil {
			t.Fatal(err)
		}
		for _, rel := range []string{"../out.txt", "a/../../out.txt", "./out.txt", "a//b", "/", "a\\..\\out.txt", "x\x00y"} {
			if err := tr.Put(ctx, rel, bytes.NewReader(nil), 0); !errors.Is(err, targets.ErrInvalidPath) {
				t.Errorf("Put %q: %v, want ErrInvalidPath", rel, err)
			}
			if err := tr.Mkcol(ctx, rel); !errors.Is(err, targets.ErrInvalidPath) && rel != "/" {
				t.Errorf("Mkcol %q: %v, want ErrInvalidPath", rel, err)
			}
		}
		// Encoded steps are names, not steps: they land inside the prefix as typed.
		for _, rel := range []string{"%2e%2e", "..%2fout.txt", "%2E%2E%2Fout.txt", "a;b=..", "?q=1", "#frag"} {
			if err := tr.Put(ctx, rel, bytes.NewReader([]byte("x")), 1); err != nil {
				t.Errorf("Put %q: %v", rel, err)
			}
		}
		got := filesUnder(t, up.dir)
		for _, f := range got {
			if !strings.HasPrefix(f, "jail/") && !strings.HasPrefix(f, "restores/") {
				t.Errorf("%s was written outside the prefix", f)
			}
		}
		want := []string{"jail/#frag", "jail/%2E%2E%2Fout.txt", "jail/%2e%2e", "jail/..%2fout.txt", "jail/?q=1", "jail/a;b=.."}
		var jail []string
		for _, f := range got {
			if strings.HasPrefix(f, "jail/") {
				jail = append(jail, f)
			}
		}
		if strings.Join(jail, "|") != strings.Join(want, "|") {
			t.Errorf("files in the prefix %q, want %q", jail, want)
		}
		for _, p := range []string{"../x", "a/../..", "a//b"} {
			if _, err := webdav.JoinURL(up.base, p); err == nil {
				t.Errorf("JoinURL accepted prefix %q", p)
			}
		}
	})

	t.Run("PutIsRetried", func(t *testing.T) {
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Key: "PUT", Times: 1, Do: answer(503)})
		tr, s := newTree(t, base, "retried", up)
		if err := tr.Mkcol(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if err := tr.Put(ctx, "f", bytes.NewReader([]byte("abc")), 3); err != nil {
			t.Fatal(err)
		}
		in.ExpectSent(t, "PUT", 2)
		targettest.ExpectSleeps(t, s, time.Second)
		if got := onDisk(t, up, "retried", "f"); string(got) != "abc" {
			t.Fatalf("on disk %q", got)
		}
	})
}
