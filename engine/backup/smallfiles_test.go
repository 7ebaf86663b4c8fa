package backup_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// Entries carry whole-second mtimes and no PAX extended header unless one is needed (as the
// original's GNU headers): a small file is two blocks, not four. A name too long for a ustar
// header still gets its PAX record.
func TestTarHeadersHaveWholeSecondsAndNoPAXRecord(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	mtime := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	plain := filepath.Join(src, "plain.txt")
	testtool.WriteFile(t, plain, []byte("hello"), 0o640, mtime)
	long := filepath.Join(src, strings.Repeat("n", 120), strings.Repeat("m", 150))
	testtool.WriteFile(t, long, []byte("long"), 0o600, mtime)
	if err := os.Chtimes(src, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	for _, sequential := range []bool{true, false} {
		h := newHarness(t)
		h.sequential = sequential
		if _, err := h.run(context.Background(), fsSpec(t, nil, plain, long)); err != nil {
			t.Fatal(err)
		}
		stream := h.tarStream()
		tr := tar.NewReader(bytes.NewReader(stream))
		seen := map[string]*tar.Header{}
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			seen[hdr.Name] = hdr
		}
		p := seen[arch(plain)]
		if p == nil {
			t.Fatalf("no entry %s in %v", arch(plain), seen)
		}
		if p.PAXRecords != nil || p.Format == tar.FormatPAX {
			t.Fatalf("plain file has a PAX header: %v (format %v)", p.PAXRecords, p.Format)
		}
		if !p.ModTime.Equal(time.Unix(mtime.Unix(), 0)) {
			t.Fatalf("mtime %v, want %v", p.ModTime, mtime.Truncate(time.Second))
		}
		if p.Mode != 0o640 || p.Size != 5 {
			t.Fatalf("header %+v", p)
		}
		// The first entry is the plain file: its own header block (type '0', not a PAX 'x'
		// header) and then its body.
		if stream[156] != tar.TypeReg || !bytes.Equal(stream[512:512+5], []byte("hello")) {
			t.Fatal("the plain file's body does not follow its header block")
		}
		l := seen[arch(long)]
		if l == nil || l.PAXRecords["path"] != arch(long) || !l.ModTime.Equal(time.Unix(mtime.Unix(), 0)) {
			t.Fatalf("long name entry %+v", l)
		}
	}
}

// The consistency check finds each kind of change after a file was read, both for small files
// read ahead and for files read one after another: appended to, touched, replaced by another
// file under the same name, and removed.
func TestConsistencyDetectsEachChange(t *testing.T) {
	t.Parallel()
	type sample struct {
		Path, Reason string
		Before       *struct{ Ino uint64 }
		AfterHandle  *struct {
			SizeBytes int64 `json:"size_bytes"`
			Ino       uint64
		} `json:"after_handle"`
		AfterPath *struct {
			SizeBytes int64 `json:"size_bytes"`
			Ino       uint64
		} `json:"after_path"`
	}
	for _, sequential := range []bool{true, false} {
		t.Run(map[bool]string{true: "Sequential", false: "ReadAhead"}[sequential], func(t *testing.T) {
			t.Parallel()
			src := t.TempDir()
			mtime := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			file := func(name string) string {
				p := filepath.Join(src, name)
				testtool.WriteFile(t, p, []byte("12345"), 0o644, mtime)
				return p
			}
			grown, touched, replaced, removed, same := file("grown"), file("touched"), file("replaced"), file("removed"), file("same")
			backup.InjectAfterCopy(grown, func() {
				f, _ := os.OpenFile(grown, os.O_APPEND|os.O_WRONLY, 0)
				f.WriteString("more")
				f.Close()
			})
			backup.InjectAfterCopy(touched, func() { os.Chtimes(touched, mtime, mtime.Add(time.Second)) })
			backup.InjectAfterCopy(replaced, func() {
				testtool.WriteFile(t, replaced+".new", []byte("12345"), 0o644, mtime)
				if err := os.Rename(replaced+".new", replaced); err != nil {
					t.Error(err)
				}
			})
			backup.InjectAfterCopy(removed, func() { os.Remove(removed) })
			h := newHarness(t)
			h.sequential = sequential
			if _, err := h.run(context.Background(), fsSpec(t, func(fs *jobspec.FilesystemSource) {
				fs.ConsistencyPolicy = jobspec.ConsistencyWarn
			}, src)); err != nil {
				t.Fatal(err)
			}
			ev := h.events.Find("source_consistency")
			if ev == nil {
				t.Fatal("no source_consistency event")
			}
			raw, _ := json.Marshal(ev.Fields["report"])
			var r struct {
				Changed  int64 `json:"changed_total"`
				Replaced int64 `json:"replaced_total"`
				Deleted  int64 `json:"deleted_total"`
				Sample   []sample
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
			}
			if r.Changed != 2 || r.Replaced != 1 || r.Deleted != 1 || len(r.Sample) != 4 {
				t.Fatalf("report %s", raw)
			}
			got := map[string]sample{}
			for _, s := range r.Sample {
				got[s.Path] = s
			}
			check := func(p, reason string) sample {
				t.Helper()
				s, ok := got[arch(p)]
				if !ok || s.Reason != reason || s.Before == nil {
					t.Fatalf("%s: want %s, report %s", p, reason, raw)
				}
				return s
			}
			if s := check(grown, backup.ReasonSizeChanged); s.AfterHandle == nil || s.AfterHandle.SizeBytes != 9 ||
				s.AfterPath == nil || *s.AfterPath != *s.AfterHandle {
				t.Fatalf("grown: %s", raw)
			}
			if s := check(touched, backup.ReasonMtimeChanged); s.AfterHandle == nil || s.AfterPath == nil {
				t.Fatalf("touched: %s", raw)
			}
			// The handle still reads the old inode; the path names the new one.
			if s := check(replaced, backup.ReasonFileIDChanged); s.AfterHandle == nil || s.AfterPath == nil ||
				s.AfterHandle.Ino != s.Before.Ino || s.AfterPath.Ino == s.Before.Ino {
				t.Fatalf("replaced: %s", raw)
			}
			if s := check(removed, backup.ReasonStatAfterMissing); s.AfterPath != nil || s.AfterHandle == nil {
				t.Fatalf("removed: %s", raw)
			}
			if _, ok := got[arch(same)]; ok {
				t.Fatalf("an unchanged file is reported: %s", raw)
			}
		})
	}
}

// Read-ahead opens files relative to the directories the walk listed, which stay open while
// a worker may still use them: every one is closed when the run ends, finished or canceled
// halfway, and the archive is the same as with sequential reads (a descriptor closed early and
// reused would read the wrong directory).
func TestListedDirectoriesAreClosed(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	mtime := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for d := range 40 {
		for f := range 20 {
			testtool.WriteFile(t, filepath.Join(src, fmt.Sprintf("d%02d", d), fmt.Sprintf("f%02d", f)),
				testtool.RandBytes(100+d*f, uint64(d*100+f)), 0o644, mtime)
		}
	}
	openUnder := func() []string {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		var out []string
		for _, e := range ents {
			if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(l, src) {
				out = append(out, l)
			}
		}
		return out
	}
	var streams [2][]byte
	for i, sequential := range []bool{true, false} {
		h := newHarness(t)
		h.sequential = sequential
		if _, err := h.run(context.Background(), fsSpec(t, nil, src)); err != nil {
			t.Fatal(err)
		}
		streams[i] = h.tarStream()
		if open := openUnder(); len(open) > 0 {
			t.Fatalf("still open after the run: %v", open)
		}
	}
	if !bytes.Equal(streams[0], streams[1]) {
		t.Fatal("read-ahead archived other bytes than sequential reads")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	backup.InjectAfterCopy(filepath.Join(src, "d10", "f05"), cancel)
	h := newHarness(t)
	if _, err := h.run(ctx, fsSpec(t, nil, src)); err == nil {
		t.Fatal("canceled run succeeded")
	}
	if open := openUnder(); len(open) > 0 {
		t.Fatalf("still open after a canceled run: %v", open)
	}
}
