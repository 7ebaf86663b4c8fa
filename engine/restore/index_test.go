package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/restore"
)

// writeEntries writes an entries.jsonl.zst of the entries next yields (false: done).
func writeEntries(t testing.TB, path string, next func() (format.Entry, bool)) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for {
		e, ok := next()
		if !ok {
			break
		}
		buf.Reset()
		if err := e.AppendLine(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := zw.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeRaw(t testing.TB, path string, lines ...string) {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, zw.EncodeAll([]byte(strings.Join(lines, "\n")+"\n"), nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func sliceEntries(es []format.Entry) func() (format.Entry, bool) {
	i := 0
	return func() (format.Entry, bool) {
		if i == len(es) {
			return format.Entry{}, false
		}
		i++
		return es[i-1], true
	}
}

func buildIndex(t testing.TB, src string) *restore.Index {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "index.sqlite")
	if err := restore.BuildIndex(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := restore.OpenIndex(context.Background(), dst, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// Segments of random paths: cases that fold (Unicode too), dotfiles, empty segments (double,
// leading and trailing slashes), "." and "..", spaces, a NUL and invalid UTF-8 (which JSON turns
// into U+FFFD), so that the index meets every corner List has.
var segments = []string{"a", "A", "b", "ab", "Ab", "é", "É", "ß", "İ", ".h", ".H", "", ".", "..", "x y", " s", "n\x00ul", "\xff", "z", "Zz", "b.txt"}

func randomEntries(r *rand.Rand, n int) []format.Entry {
	kinds := []string{format.KindFile, format.KindFile, format.KindDir, format.KindSymlink, "fifo", ""}
	var es []format.Entry
	for range n {
		depth := 1 + r.IntN(4)
		segs := make([]string, depth)
		for i := range segs {
			segs[i] = segments[r.IntN(len(segments))]
		}
		p := strings.Join(segs, "/")
		switch r.IntN(12) {
		case 0:
			p += "/"
		case 1:
			p = "/" + p
		case 2:
			p = "./" + p
		}
		es = append(es, format.Entry{Path: p, Kind: kinds[r.IntN(len(kinds))], Size: r.Int64N(2000) - 100})
	}
	return es
}

func randomOptions(r *rand.Rand, es []format.Entry) restore.ListOptions {
	var o restore.ListOptions
	switch r.IntN(6) {
	case 0:
	case 1:
		o.Prefix = segments[r.IntN(len(segments))]
	default:
		// The directory of an entry, sometimes with decorations normalization strips.
		p := es[r.IntN(len(es))].Path
		if i := strings.LastIndexByte(p, '/'); i > 0 {
			p = p[:i]
		}
		switch r.IntN(5) {
		case 0:
			p = "/" + p + "/"
		case 1:
			p = " ./" + p + "// "
		case 2:
			p = strings.ReplaceAll(p, "/", "\\")
		}
		o.Prefix = p
	}
	if r.IntN(3) == 0 {
		o.Q = []string{"a", "A", "É", "é", "B.T", ".", "ss", "i̇", "x", ""}[r.IntN(10)]
	}
	if r.IntN(3) == 0 {
		o.Kind = []string{format.KindFile, format.KindDir, format.KindSymlink}[r.IntN(3)]
	}
	o.HideDotfiles = r.IntN(3) == 0
	o.FilesFirst = r.IntN(2) == 0
	if r.IntN(3) == 0 {
		v := r.Int64N(1500) - 50
		o.MinSize = &v
	}
	if r.IntN(3) == 0 {
		v := r.Int64N(2000)
		o.MaxSize = &v
	}
	o.Limit = []int{0, 1, 2, 3, 7, 200, 1000, 5000, -1}[r.IntN(9)]
	switch r.IntN(6) {
	case 0, 1:
	case 2:
		o.Cursor = strconv.Itoa(r.IntN(40))
	case 3:
		o.Cursor = strconv.Itoa(r.IntN(4))
	case 4:
		o.Cursor = []string{"x", "-1", "+2", "1e3", " 1"}[r.IntN(5)]
	default:
		o.Cursor = "0"
	}
	return o
}

// TestIndexListMatchesStreaming is the property the index rests on: on random trees and random
// queries (prefix, search, kind, dotfiles, sizes, order, page size, cursor), including every
// page of a walk through the cursors, the index answers exactly what List answers by streaming.
func TestIndexListMatchesStreaming(t *testing.T) {
	t.Parallel()
	seed := uint64(os.Getpid())
	if s := os.Getenv("BASTION_INDEX_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (BASTION_INDEX_SEED)", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	ctx := context.Background()
	for tree := range 40 {
		es := randomEntries(r, 1+r.IntN(300))
		src := filepath.Join(t.TempDir(), "entries.jsonl.zst")
		writeEntries(t, src, sliceEntries(es))
		ix := buildIndex(t, src)
		for range 60 {
			o := randomOptions(r, es)
			want, werr := restore.List(src, o)
			got, gerr := ix.List(ctx, o)
			if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(want, got) {
				t.Fatalf("tree %d, options %+v:\nstreaming %+v %v\nindex     %+v %v", tree, o, want, werr, got, gerr)
			}
			// Walk on through the cursors.
			for i := 0; want.NextCursor != "" && i < 50; i++ {
				o.Cursor = want.NextCursor
				want, werr = restore.List(src, o)
				got, gerr = ix.List(ctx, o)
				if werr != nil || gerr != nil || !reflect.DeepEqual(want, got) {
					t.Fatalf("tree %d, options %+v:\nstreaming %+v %v\nindex     %+v %v", tree, o, want, werr, got, gerr)
				}
			}
		}
	}
}

// TestIndexOrderedTree: a walk-ordered tree (the order backups write) with files and folders at
// several depths, every directory listed in both orders through all its pages.
func TestIndexOrderedTree(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "entries.jsonl.zst")
	var es []format.Entry
	var dirs []string
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		dirs = append(dirs, dir)
		for i := range 5 {
			p := fmt.Sprintf("%s/f%02d.txt", dir, i)
			es = append(es, format.FileEntry(p, int64(i*100), "h"))
		}
		if depth < 3 {
			for i := range 3 {
				d := fmt.Sprintf("%s/D%d", dir, i)
				es = append(es, format.Entry{Path: d, Kind: format.KindDir})
				walk(d, depth+1)
			}
		}
	}
	walk("srv/app", 0)
	writeEntries(t, src, sliceEntries(es))
	ix := buildIndex(t, src)
	for _, d := range append(dirs, "", "srv", "missing", "srv/app/f00.txt") {
		for _, ff := range []bool{false, true} {
			o := restore.ListOptions{Prefix: d, Limit: 3, FilesFirst: ff}
			for {
				want, _ := restore.List(src, o)
				got, err := ix.List(context.Background(), o)
				if err != nil || !reflect.DeepEqual(want, got) {
					t.Fatalf("%+v:\nstreaming %+v\nindex     %+v %v", o, want, got, err)
				}
				if want.NextCursor == "" {
					break
				}
				o.Cursor = want.NextCursor
			}
		}
	}
}

// TestIndexHostileEntries: what List refuses (a bad JSON line, a line over its limit) fails the
// build the same way and leaves no index behind; a very deep path is indexed (in linear space)
// and listed as List lists it.
func TestIndexHostileEntries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, lines := range map[string][]string{
		"BadJSON":  {`{"path":"a","kind":"file","size":1,"hash_alg":null,"hash":null}`, `{"path":`},
		"BadType":  {`{"path":"a","kind":"file","size":"big","hash_alg":null,"hash":null}`},
		"LongLine": {`{"path":"` + strings.Repeat("x", 17<<20) + `","kind":"file","size":1}`},
	} {
		src := filepath.Join(dir, name+".zst")
		writeRaw(t, src, lines...)
		_, lerr := restore.List(src, restore.ListOptions{})
		dst := filepath.Join(dir, name+".sqlite")
		err := restore.BuildIndex(context.Background(), src, dst)
		if err == nil || lerr == nil || err.Error() != lerr.Error() {
			t.Fatalf("%s: build %v, list %v", name, err, lerr)
		}
		if _, serr := os.Stat(dst); !errors.Is(serr, os.ErrNotExist) {
			t.Fatalf("%s: a failed build left %s", name, dst)
		}
	}

	deep := strings.Repeat("d/", 20000) + "leaf"
	src := filepath.Join(dir, "deep.zst")
	writeEntries(t, src, sliceEntries([]format.Entry{
		{Path: deep, Kind: format.KindFile, Size: 3},
		{Path: strings.Repeat("/", 1000), Kind: format.KindFile},
		{Path: "x" + strings.Repeat("/", 1000) + "y", Kind: format.KindFile},
	}))
	ix := buildIndex(t, src)
	for _, prefix := range []string{"", "d", strings.Repeat("d/", 19999) + "d", "x", "x/", "x" + strings.Repeat("/", 999)} {
		o := restore.ListOptions{Prefix: prefix}
		want, _ := restore.List(src, o)
		got, err := ix.List(context.Background(), o)
		if err != nil || !reflect.DeepEqual(want, got) {
			t.Fatalf("prefix of %d bytes:\nstreaming %+v\nindex     %+v %v", len(prefix), want, got, err)
		}
	}
}

// TestOpenIndexRefusesInvalid: a missing, corrupt, partial (no complete mark) or stale (other
// source size) index is refused with ErrIndexInvalid, never used.
func TestOpenIndexRefusesInvalid(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "entries.jsonl.zst")
	writeEntries(t, src, sliceEntries([]format.Entry{{Path: "a/b", Kind: format.KindFile, Size: 1}}))
	fi, _ := os.Stat(src)
	good := filepath.Join(dir, "good.sqlite")
	if err := restore.BuildIndex(ctx, src, good); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.sqlite")
	os.WriteFile(garbage, bytes.Repeat([]byte("not sqlite "), 1000), 0o600)
	truncated := filepath.Join(dir, "truncated.sqlite")
	os.WriteFile(truncated, raw[:len(raw)/2], 0o600)
	// A build cancelled half-way leaves nothing under its name.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	partial := filepath.Join(dir, "partial.sqlite")
	if err := restore.BuildIndex(cancelled, src, partial); err == nil {
		t.Fatal("a cancelled build succeeded")
	}
	for name, c := range map[string]struct {
		path string
		size int64
	}{
		"Missing": {filepath.Join(dir, "none.sqlite"), fi.Size()}, "Garbage": {garbage, fi.Size()},
		"Truncated": {truncated, fi.Size()}, "Partial": {partial, fi.Size()}, "Stale": {good, fi.Size() + 1},
	} {
		ix, err := restore.OpenIndex(ctx, c.path, c.size)
		if err == nil {
			// A truncated file may open; it must not answer.
			_, err = ix.List(ctx, restore.ListOptions{})
			ix.Close()
		}
		if err == nil {
			t.Fatalf("%s: index used", name)
		}
		if name != "Truncated" && !errors.Is(err, restore.ErrIndexInvalid) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	ix, err := restore.OpenIndex(ctx, good, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	ix.Close()
}
