package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/backup/format"
)

// Fuzz targets for what reads hostile input: the manifest, archive paths, and the tar walk.
// The f.Add seeds run in every go test; scripts/test fuzzes each for a few seconds and
// docs/development.md gives the longer run.

// FuzzManifest: whatever decodeManifest accepts names only parts that stay in the run
// directory, and encodes back to a manifest it accepts the same way.
func FuzzManifest(f *testing.F) {
	valid := format.Manifest{FormatVersion: 1, JobID: "j", RunID: "r",
		Pipeline:   format.Pipeline{Format: "archive_v1", Tar: "pax", Compression: "zstd", Encryption: "none", SplitBytes: 1 << 20},
		Artifacts:  []format.Part{{Name: format.PartName(1), Size: 10, HashAlg: "blake3", Hash: strings.Repeat("ab", 32)}},
		EntryIndex: format.EntryIndex{Name: "entries.jsonl.zst", Count: 3}}
	b, _ := valid.Encode()
	f.Add(b)
	f.Add([]byte(`{"format_version":1}`))
	f.Add([]byte(`{"format_version":1,"artifacts":[{"name":"../../master.key","size":1}]}`))
	f.Add([]byte(`{"format_version":1,"artifacts":[{"name":"payload.part+00001","size":1}]}`))
	f.Add([]byte(`{"format_version":1,"artifacts":[{"name":"payload.part000001/../x","size":1}]}`))
	// More digits than an int holds: the manifest check and format.IsPartName once disagreed
	// on it (found by the fuzzer).
	f.Add([]byte(`{"format_version":1,"artifacts":[{"name":"payload.part0055554444444455550001","size":1}]}`))
	f.Add([]byte(`{"format_version":1,"artifacts":[{"name":"payload.part000001","size":-1}]}`))
	f.Add([]byte(`{"format_version":1,"artifacts":[{"name":"payload.part000001"},{"name":"payload.part000001"}]}`))
	f.Add([]byte(`{"format_version":1,"entry_index":{"count":-5}}`))
	f.Add([]byte(`{"format_version":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeManifest(b)
		if err != nil {
			return
		}
		runDir := "/base/job/run"
		for _, p := range m.Artifacts {
			if p.Size < 0 {
				t.Fatalf("negative size accepted: %+v", p)
			}
			if j := filepath.Join(runDir, p.Name); filepath.Dir(j) != runDir || filepath.Base(j) != p.Name {
				t.Fatalf("part name %q leaves the run directory (%s)", p.Name, j)
			}
			if !format.IsPartName(p.Name) {
				t.Fatalf("part name %q accepted", p.Name)
			}
		}
		again, err := m.Encode()
		if err != nil {
			t.Fatalf("encode an accepted manifest: %v", err)
		}
		m2, err := decodeManifest(again)
		if err != nil {
			t.Fatalf("re-encoded manifest refused: %v\n%s", err, again)
		}
		if third, _ := m2.Encode(); !bytes.Equal(third, again) {
			t.Fatalf("encoding is not stable:\n%s\n%s", again, third)
		}
	})
}

// FuzzArchivePath: cleanName (an archive or index path to a path under the destination) never
// gives a path that leaves the destination, and insideDest agrees with it.
func FuzzArchivePath(f *testing.F) {
	for _, s := range []string{
		"a/b.txt", "./a", "a/", "/etc/passwd", "../x", "a/../../x", `a\..\..\x`, `C:\x`, "c:/x",
		"a//b/./c", ".", "./", "..", "a/..", "...", "a/...", "a\x00b", "\x00", " ", "a/ /b", "//", "./././",
		strings.Repeat("0", 256) + "/0", // a parent name too long to lstat (found by the fuzzer)
	} {
		f.Add(s)
	}
	dest := f.TempDir()
	f.Fuzz(func(t *testing.T, name string) {
		rel, why := cleanName(name)
		if why != "" {
			if rel != "" {
				t.Fatalf("refused %q (%s) but returned %q", name, why, rel)
			}
			return
		}
		if rel == "" || strings.HasPrefix(rel, "/") || strings.ContainsRune(rel, 0) || strings.Contains(rel, `\`) {
			t.Fatalf("cleanName(%q) = %q", name, rel)
		}
		if len(rel) >= 2 && rel[1] == ':' {
			t.Fatalf("cleanName(%q) = %q looks like a drive path", name, rel)
		}
		for seg := range strings.SplitSeq(rel, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("cleanName(%q) = %q has segment %q", name, rel, seg)
			}
		}
		if again, why := cleanName(rel); why != "" || again != rel {
			t.Fatalf("cleanName is not idempotent: %q -> %q -> %q (%s)", name, rel, again, why)
		}
		p, why := insideDest(dest, name)
		if strings.HasPrefix(why, "cannot inspect parent") {
			return // a name too long for the filesystem, say: refusing is the safe answer
		}
		if why != "" {
			t.Fatalf("insideDest refused %q that cleanName accepted: %s", name, why)
		}
		if r, err := filepath.Rel(dest, p); err != nil || r == ".." || strings.HasPrefix(r, "../") || r != filepath.FromSlash(rel) {
			t.Fatalf("insideDest(%q) = %s, outside %s", name, p, dest)
		}
	})
}

// FuzzExtract walks an arbitrary tar (seeded with the known attacks) into a destination beside
// a directory "outside" holding one file, then checks that outside is exactly as it was.
// Symlinks in the seeds are relative ("../outside") so they reach it from any temp dir.
func FuzzExtract(f *testing.F) {
	seeds := [][]tarSeed{
		{{name: "a.txt", body: "a"}, {name: "d/", typ: tar.TypeDir, mode: 0o755}, {name: "d/b", body: "b"}},
		{{name: "x/", typ: tar.TypeDir, mode: 0o777}, {name: "x", typ: tar.TypeSymlink, link: "../outside/secret"}},
		{{name: "x/", typ: tar.TypeDir, mode: 0o777}, {name: "x", typ: tar.TypeSymlink, link: "../outside"}, {name: "x/file", body: "pwn"}},
		{{name: "x", typ: tar.TypeSymlink, link: "../outside"}, {name: "x/", typ: tar.TypeDir, mode: 0o777}, {name: "x/y/", typ: tar.TypeDir}},
		{{name: "s", typ: tar.TypeSymlink, link: "../outside"}, {name: "h", typ: tar.TypeLink, link: "s/secret"}},
		{{name: "s", typ: tar.TypeSymlink, link: "../outside/secret"}, {name: "h", typ: tar.TypeLink, link: "s"}, {name: "s", body: "over"}},
		{{name: "../outside/secret", body: "pwn"}, {name: "/tmp/abs", body: "x"}, {name: "h", typ: tar.TypeLink, link: "../outside/secret"}},
		{{name: "d/", typ: tar.TypeDir}, {name: "d/up", typ: tar.TypeSymlink, link: ".."}, {name: "d/up/up2", typ: tar.TypeSymlink, link: "../outside"}, {name: "d/up/up2/secret", body: "pwn"}},
		{{name: "su", body: "x", mode: 0o6755}, {name: "t/", typ: tar.TypeDir, mode: 0o1777}},
		{{name: "f", body: "x"}, {name: "f/", typ: tar.TypeDir, mode: 0o700}, {name: "f", typ: tar.TypeSymlink, link: "../outside"}},
	}
	for _, s := range seeds {
		f.Add(buildTar(f, s), false)
	}
	f.Add([]byte("not a tar"), true)
	f.Fuzz(func(t *testing.T, b []byte, keep bool) {
		// Skip entries that claim large bodies (a sparse header can claim terabytes of zeros):
		// the property here is where things are written, not how much.
		tr := tar.NewReader(bytes.NewReader(b))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.Size > 1<<20 {
				return
			}
		}
		ar := newFuzzArena(t)
		d, err := openDestDir(ar.dest)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		var res Result
		x := &extractor{d: d, policy: ConflictOverwrite, keepSpecial: keep, res: &res, buf: make([]byte, 32<<10)}
		err = x.run(context.Background(), tar.NewReader(bytes.NewReader(b)), func() {})
		if err == nil {
			err = x.finishDirs()
		}
		var se *streamErr
		var re *Error
		if err != nil && !errors.As(err, &se) && !(errors.As(err, &re) && (re.Code == CodeIO || re.Code == CodeConflict)) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		ar.check(t, keep)
	})
}

// fuzzArena is a destination beside a directory "outside" holding one file, both dated in the
// past, for fuzz tests that write hostile input into the destination.
type fuzzArena struct {
	base, dest, outside, secret string
	then                        time.Time
}

func newFuzzArena(t *testing.T) *fuzzArena {
	t.Helper()
	base := t.TempDir()
	ar := &fuzzArena{base: base, dest: filepath.Join(base, "dest"), outside: filepath.Join(base, "outside"),
		then: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)}
	ar.secret = filepath.Join(ar.outside, "secret")
	for _, err := range []error{os.Mkdir(ar.dest, 0o755), os.Mkdir(ar.outside, 0o700), os.WriteFile(ar.secret, []byte("secret"), 0o600),
		os.Chtimes(ar.secret, ar.then, ar.then), os.Chtimes(ar.outside, ar.then, ar.then)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return ar
}

// check fails unless outside and its file are exactly as they were, nothing appeared beside
// the destination and, unless keep, the destination holds no set-id or sticky bits.
func (ar *fuzzArena) check(t *testing.T, keep bool) {
	t.Helper()
	base, dest, outside, secret, then := ar.base, ar.dest, ar.outside, ar.secret, ar.then
	for _, p := range []string{secret, outside} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatalf("outside: %v", err)
		}
		want := os.FileMode(0o600)
		if p == outside {
			want = os.ModeDir | 0o700
		}
		if fi.Mode() != want || !fi.ModTime().Equal(then) {
			t.Fatalf("%s changed: %v %v", p, fi.Mode(), fi.ModTime())
		}
	}
	if got, _ := os.ReadFile(secret); string(got) != "secret" {
		t.Fatalf("secret rewritten: %q", got)
	}
	for _, dir := range []string{base, outside} {
		ents, _ := os.ReadDir(dir)
		names := []string{}
		for _, e := range ents {
			names = append(names, e.Name())
		}
		want := []string{"dest", "outside"}
		if dir == outside {
			want = []string{"secret"}
		}
		if !slices.Equal(names, want) {
			t.Fatalf("%s holds %v", dir, names)
		}
	}
	// Hard links to the outside file would show as a link count above one.
	if fi, _ := os.Lstat(secret); fi != nil {
		if n := linkCount(fi); n != 1 {
			t.Fatalf("the outside file has %d links", n)
		}
	}
	if !keep {
		checkNoSpecialBits(t, dest)
	}
}

type tarSeed struct {
	name, body, link string
	typ              byte
	mode             int64
}

func buildTar(f *testing.F, entries []tarSeed) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, ModTime: time.Unix(1_600_000_000, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			f.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

func checkNoSpecialBits(t *testing.T, dest string) {
	t.Helper()
	filepath.WalkDir(dest, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
			t.Fatalf("%s restored with %v", p, fi.Mode())
		}
		return nil
	})
}

func linkCount(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
