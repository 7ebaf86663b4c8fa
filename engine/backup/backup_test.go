package backup_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/testtool"
)

const jobID = "5b0f0c3e-6f7c-4a53-9d6f-0a8f2c1d9e01"

func logger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewConsoleWriter(zerolog.ConsoleTestWriter(t))).Level(zerolog.WarnLevel)
}

func spec(t *testing.T, doc string, patch func(*jobspec.Spec)) *jobspec.Spec {
	t.Helper()
	s, err := jobspec.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if patch != nil {
		patch(s)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func fsSpec(t *testing.T, patch func(*jobspec.FilesystemSource), paths ...string) *jobspec.Spec {
	return spec(t, `{"v":1,"type":"filesystem","source":{"paths":["/x"]},"target":{"type":"local_dir","base_dir":"/bk","part_size_bytes":1048576}}`,
		func(s *jobspec.Spec) {
			s.Filesystem.Paths = paths
			if patch != nil {
				patch(s.Filesystem)
			}
		})
}

type harness struct {
	t       *testing.T
	target  targets.Target
	local   *localdir.Target
	staging string
	events  *testtool.Events
	runID   string
	// sequential turns read-ahead off: for hooks that change one file while another is read.
	sequential bool
}

func newHarness(t *testing.T) *harness {
	tg, err := localdir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, target: tg, local: tg, staging: filepath.Join(t.TempDir(), "staging"), events: &testtool.Events{}, runID: uuid.NewString()}
}

func (h *harness) run(ctx context.Context, s *jobspec.Spec) (backup.Summary, error) {
	req := backup.Request{
		JobID: jobID, RunID: h.runID, StartedAt: time.Now(), Spec: s, Target: h.target,
		StagingDir: h.staging, Events: h.events, Logger: logger(h.t),
	}
	if h.sequential {
		req = backup.SequentialReads(req)
	}
	return backup.Run(ctx, req)
}

func (h *harness) runDir() string {
	d, err := h.local.RunDir(targets.RunRef{JobID: jobID, RunID: h.runID})
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) exists(name string) bool {
	_, err := os.Stat(filepath.Join(h.runDir(), name))
	return err == nil
}

// index reads the run's entries.jsonl.zst as raw JSON objects.
func (h *harness) index() []map[string]any {
	h.t.Helper()
	f, err := os.Open(filepath.Join(h.runDir(), targets.EntriesName))
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		h.t.Fatal(err)
	}
	defer zr.Close()
	var out []map[string]any
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			h.t.Fatalf("index line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func paths(idx []map[string]any) []string {
	var out []string
	for _, e := range idx {
		out = append(out, e["path"].(string))
	}
	return out
}

func write(t *testing.T, p string, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func arch(p string) string { return strings.TrimPrefix(filepath.Clean(p), "/") }

func TestGlobsAndIndex(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "proj")
	for _, f := range []string{"a.go", "a.txt", "node_modules/x/y.js", "sub/node_modules/z.js", "sub/b.go", "sub/deep/c.go", "keep/.env"} {
		write(t, filepath.Join(src, f), "x")
	}
	os.Symlink("a.txt", filepath.Join(src, "link"))
	h := newHarness(t)
	sum, err := h.run(context.Background(), fsSpec(t, func(fs *jobspec.FilesystemSource) {
		fs.Exclude = []string{"**/node_modules", "*/keep"}
		fs.Include = []string{"*.go"} // * crosses /, like globset
	}, src))
	if err != nil {
		t.Fatal(err)
	}
	p := arch(src)
	want := []string{p, p + "/a.go", p + "/link", p + "/sub", p + "/sub/b.go", p + "/sub/deep", p + "/sub/deep/c.go"}
	got := paths(h.index())
	if !slices.Equal(got, want) {
		t.Fatalf("entries\n got %v\nwant %v", got, want)
	}
	if sum.EntriesCount != int64(len(want)) || !h.exists(targets.CompleteName) {
		t.Fatalf("summary %+v", sum)
	}
	// Every line has the five core keys; hash keys are null for non-files.
	for _, e := range h.index() {
		for _, k := range []string{"path", "kind", "size", "hash_alg", "hash"} {
			if _, ok := e[k]; !ok {
				t.Fatalf("entry %v lacks %s", e, k)
			}
		}
		if e["kind"] != "file" && (e["hash"] != nil || e["hash_alg"] != nil) {
			t.Fatalf("non-file entry with hash: %v", e)
		}
		if e["kind"] == "file" && (e["hash_alg"] != "blake3" || len(e["hash"].(string)) != 64) {
			t.Fatalf("file entry without blake3: %v", e)
		}
	}
}

func TestPathHygieneAndLegacyRoot(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write(t, filepath.Join(root, "a", "inner", "f"), "1")
	write(t, filepath.Join(root, "b", "g"), "2")
	h := newHarness(t)
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	// inner first, then its parent: the parent's walk must not emit inner again; the later
	// path inside a is dropped; blanks and duplicates are dropped.
	_, err := h.run(context.Background(), fsSpec(t, nil, filepath.Join(a, "inner"), "", a, b, b+"/", filepath.Join(a, "inner", "f")))
	if err != nil {
		t.Fatal(err)
	}
	got := paths(h.index())
	want := []string{arch(a) + "/inner", arch(a) + "/inner/f", arch(a), arch(b), arch(b) + "/g"}
	if !slices.Equal(got, want) {
		t.Fatalf("entries\n got %v\nwant %v", got, want)
	}
	if h.events.Find("fs_issues") == nil {
		t.Fatal("no fs_issues warning for the dropped path")
	}

	h2 := newHarness(t)
	s := spec(t, `{"v":1,"type":"filesystem","source":{"root":"`+root+`"},"target":{"type":"local_dir","base_dir":"/bk"}}`, nil)
	if _, err := h2.run(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if got := paths(h2.index()); !slices.Equal(got, []string{"a", "a/inner", "a/inner/f", "b", "b/g"}) {
		t.Fatalf("legacy root entries %v", got)
	}
}

func TestSpecialFilesAreSkippedWithWarnings(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	write(t, filepath.Join(src, "ok.txt"), "ok")
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(src, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := newHarness(t)
	if _, err := h.run(context.Background(), fsSpec(t, nil, src)); err != nil {
		t.Fatal(err)
	}
	if got := paths(h.index()); !slices.Equal(got, []string{arch(src), arch(src) + "/ok.txt"}) {
		t.Fatalf("entries %v", got)
	}
	ev := h.events.Find("fs_issues")
	if ev == nil || ev.Fields["warnings_total"].(int64) != 2 {
		t.Fatalf("fs_issues event %+v", ev)
	}
	b, _ := json.Marshal(ev.Fields)
	if !strings.Contains(string(b), "fifo") || !strings.Contains(string(b), "s.sock") {
		t.Fatalf("warnings do not name the paths: %s", b)
	}
}

func TestErrorPolicies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy   string
		wantCode string
		complete bool
		manifest bool
	}{
		{jobspec.ErrorFailFast, backup.CodeFSIssues, false, false},
		{jobspec.ErrorSkipFail, backup.CodeFSIssues, false, true},
		{jobspec.ErrorSkipOK, "", true, true},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			src := t.TempDir()
			write(t, filepath.Join(src, "a.txt"), "a")
			write(t, filepath.Join(src, "bad.txt"), "b")
			write(t, filepath.Join(src, "c.txt"), "c")
			backup.InjectOpenFault(filepath.Join(src, "bad.txt"), syscall.EACCES)
			h := newHarness(t)
			_, err := h.run(context.Background(), fsSpec(t, func(fs *jobspec.FilesystemSource) { fs.ErrorPolicy = tc.policy }, src))
			var be *backup.Error
			if tc.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if !errors.As(err, &be) || be.Code != tc.wantCode {
				t.Fatalf("err = %v, want code %s", err, tc.wantCode)
			}
			if h.exists(targets.CompleteName) != tc.complete || h.exists(targets.ManifestName) != tc.manifest {
				t.Fatalf("complete=%v manifest=%v, want %v %v", h.exists(targets.CompleteName), h.exists(targets.ManifestName), tc.complete, tc.manifest)
			}
			if tc.manifest {
				if got := paths(h.index()); !slices.Equal(got, []string{arch(src), arch(src) + "/a.txt", arch(src) + "/c.txt"}) {
					t.Fatalf("entries %v", got)
				}
				ev := h.events.Find("fs_issues")
				if ev == nil || ev.Level != backup.LevelError || !strings.Contains(fmt.Sprint(ev.Fields["errors"]), "bad.txt") {
					t.Fatalf("fs_issues event %+v", ev)
				}
			}
			if _, err := os.Stat(h.staging); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("staging left behind: %v", err)
			}
		})
	}
}

func TestConsistencyPolicies(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{jobspec.ConsistencyWarn, jobspec.ConsistencyFail, jobspec.ConsistencyIgnore} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			src := t.TempDir()
			grow := filepath.Join(src, "grow.log")
			write(t, grow, strings.Repeat("x", 3<<20))
			write(t, filepath.Join(src, "gone.txt"), "bye")
			backup.InjectAfterCopy(grow, func() {
				f, _ := os.OpenFile(grow, os.O_APPEND|os.O_WRONLY, 0)
				f.WriteString("more")
				f.Close()
			})
			backup.InjectAfterCopy(filepath.Join(src, "gone.txt"), func() { os.Remove(filepath.Join(src, "gone.txt")) })
			h := newHarness(t)
			sum, err := h.run(context.Background(), fsSpec(t, func(fs *jobspec.FilesystemSource) { fs.ConsistencyPolicy = policy }, src))
			ev := h.events.Find("source_consistency")
			switch policy {
			case jobspec.ConsistencyFail:
				var be *backup.Error
				if !errors.As(err, &be) || be.Code != backup.CodeSourceConsistency {
					t.Fatalf("err = %v", err)
				}
				// Staged plan: nothing at all reached the target.
				if _, err := os.Stat(h.runDir()); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("run dir exists after a consistency failure: %v", err)
				}
			case jobspec.ConsistencyWarn:
				if err != nil || ev == nil {
					t.Fatalf("err=%v event=%v", err, ev)
				}
				b, _ := json.Marshal(ev.Fields["report"])
				for _, want := range []string{`"changed_total":1`, `"deleted_total":1`, `"size_changed"`, `"stat_after_missing"`, `"v":2`} {
					if !strings.Contains(string(b), want) {
						t.Fatalf("report %s lacks %s", b, want)
					}
				}
				if sum.Planner.PlanMode != "rolling_upload" {
					t.Fatalf("plan %+v", sum.Planner)
				}
			case jobspec.ConsistencyIgnore:
				if err != nil || ev != nil {
					t.Fatalf("err=%v event=%v", err, ev)
				}
			}
		})
	}
}

// gate is a Target whose Put of parts blocks until the test releases it, and which records how
// many parts sat on staging at each Put.
type gate struct {
	targets.Target
	staging  string
	release  chan struct{}
	entered  chan string
	maxLocal atomic.Int64
	failOn   string
	failErr  error
	onPut    func(name string)
}

func (g *gate) Put(ctx context.Context, run targets.RunRef, name string, body io.ReadSeeker, size int64) (bool, error) {
	if format.IsPartName(name) {
		ents, _ := os.ReadDir(g.staging)
		n := int64(0)
		for _, e := range ents {
			if format.IsPartName(e.Name()) {
				n++
			}
		}
		for {
			cur := g.maxLocal.Load()
			if n <= cur || g.maxLocal.CompareAndSwap(cur, n) {
				break
			}
		}
		if g.onPut != nil {
			g.onPut(name)
		}
		if name == g.failOn {
			return false, g.failErr
		}
		if g.entered != nil {
			g.entered <- name
		}
		if g.release != nil {
			select {
			case <-g.release:
			case <-ctx.Done():
				return false, ctx.Err()
			}
		}
	}
	return g.Target.Put(ctx, run, name, body, size)
}

func bigSource(t *testing.T, mib int) string {
	src := t.TempDir()
	b := make([]byte, mib<<20)
	rand.Read(b) // incompressible: one MiB of input makes about one MiB of payload
	write(t, filepath.Join(src, "random.bin"), string(b))
	return src
}

func TestRollingUploadBackpressure(t *testing.T) {
	t.Parallel()
	src := bigSource(t, 12)
	h := newHarness(t)
	g := &gate{Target: h.target, staging: h.staging, release: make(chan struct{}), entered: make(chan string)}
	h.target = g
	done := make(chan error, 1)
	go func() {
		_, err := h.run(context.Background(), fsSpec(t, nil, src))
		done <- err
	}()
	// Release parts one at a time, only once the uploader is blocked on each. While it is
	// blocked, packing fills the channel and then blocks too.
	for {
		select {
		case <-g.entered:
			g.release <- struct{}{}
			continue
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		}
		break
	}
	if m := g.maxLocal.Load(); m < 2 || m > 3 {
		t.Fatalf("parts on staging peaked at %d, want 2..3", m)
	}
	if !h.exists(targets.CompleteName) {
		t.Fatal("no complete.json")
	}
}

func TestUploaderFailureIsRootCause(t *testing.T) {
	t.Parallel()
	src := bigSource(t, 6)
	h := newHarness(t)
	h.target = &gate{Target: h.target, staging: h.staging, failOn: format.PartName(2),
		failErr: &targets.Error{Kind: targets.KindStorageFull, Code: "local_dir_storage_full", Op: "put", Err: syscall.ENOSPC}}
	_, err := h.run(context.Background(), fsSpec(t, nil, src))
	var be *backup.Error
	if !errors.As(err, &be) || be.Code != "local_dir_storage_full" || be.Kind != targets.KindStorageFull || be.Retriable {
		t.Fatalf("err = %#v", err)
	}
	if h.exists(targets.CompleteName) || h.exists(targets.ManifestName) {
		t.Fatal("failed run wrote manifest or complete.json")
	}
	if _, err := os.Stat(h.staging); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("staging not removed")
	}
}

func TestCancelMidRun(t *testing.T) {
	t.Parallel()
	src := bigSource(t, 8)
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.target = &gate{Target: h.target, staging: h.staging, onPut: func(name string) {
		if name == format.PartName(3) {
			cancel()
		}
	}}
	_, err := h.run(ctx, fsSpec(t, nil, src))
	var be *backup.Error
	if !errors.As(err, &be) || be.Code != backup.CodeCanceled {
		t.Fatalf("err = %v", err)
	}
	if h.exists(targets.CompleteName) || h.exists(targets.ManifestName) {
		t.Fatal("canceled run wrote manifest or complete.json")
	}
	if _, err := os.Stat(h.staging); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("staging not removed")
	}
}

func TestPartsAreCutExactly(t *testing.T) {
	t.Parallel()
	src := bigSource(t, 3)
	h := newHarness(t)
	if _, err := h.run(context.Background(), fsSpec(t, nil, src)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(h.runDir(), targets.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := format.DecodeManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Artifacts) < 4 {
		t.Fatalf("%d parts", len(m.Artifacts))
	}
	for i, p := range m.Artifacts {
		if p.Name != format.PartName(i+1) {
			t.Fatalf("part %d named %s", i, p.Name)
		}
		if i < len(m.Artifacts)-1 && p.Size != 1<<20 {
			t.Fatalf("%s has %d bytes, want exactly 1 MiB", p.Name, p.Size)
		}
		if p.Size == 0 {
			t.Fatalf("empty part %s", p.Name)
		}
	}
	// The manifest's keys are in the order of backup.md §7.
	keys := []string{`"format_version"`, `"job_id"`, `"run_id"`, `"started_at"`, `"ended_at"`, `"pipeline"`, `"format"`,
		`"tar"`, `"compression"`, `"encryption"`, `"split_bytes"`, `"artifacts"`, `"entry_index"`}
	last := -1
	for _, k := range keys {
		i := strings.Index(string(raw), k)
		if i <= last {
			t.Fatalf("manifest key %s out of order:\n%s", k, raw)
		}
		last = i
	}
	if !strings.Contains(string(raw), "\n  \"job_id\"") || strings.Contains(string(raw), "encryption_key") {
		t.Fatalf("manifest is not pretty or has a key for no encryption:\n%s", raw)
	}
}

func backupRunFn(ctx context.Context, tg targets.Target, s *jobspec.Spec, run, staging string, keys backup.KeyProvider, now time.Time) (backup.Summary, error) {
	return backup.Run(ctx, backup.Request{JobID: jobID, RunID: run, StartedAt: now, Spec: s, Target: tg, StagingDir: staging, Keys: keys, Logger: zerolog.Nop()})
}

// A file the directory listing types as regular but that is a FIFO when opened (swapped in, or a
// filesystem that types entries wrongly) is skipped with the walk's "special file" warning, not
// failed as unreadable: fail_fast goes on, with and without read-ahead.
func TestListedFileThatIsSpecialWhenOpenedIsSkipped(t *testing.T) {
	t.Parallel()
	for _, sequential := range []bool{true, false} {
		t.Run(fmt.Sprintf("sequential=%v", sequential), func(t *testing.T) {
			t.Parallel()
			src := t.TempDir()
			write(t, filepath.Join(src, "a.txt"), "a")
			pipe := filepath.Join(src, "p.txt")
			write(t, pipe, "regular when listed")
			backup.InjectBeforeOpen(pipe, func() {
				if err := os.Remove(pipe); err != nil {
					t.Error(err)
				}
				if err := syscall.Mkfifo(pipe, 0o600); err != nil {
					t.Error(err)
				}
			})
			h := newHarness(t)
			h.sequential = sequential
			if _, err := h.run(context.Background(), fsSpec(t, func(fs *jobspec.FilesystemSource) {
				fs.ErrorPolicy = jobspec.ErrorFailFast
				fs.PreScan = false
			}, src)); err != nil {
				t.Fatalf("run: %v", err)
			}
			issues := h.events.Find("fs_issues")
			warned, _ := json.Marshal(issues.Fields["warnings"])
			if issues.Fields["errors_total"].(int64) != 0 ||
				!strings.Contains(string(warned), `"path":"`+arch(pipe)+`","message":"special file skipped (fifo)"`) {
				t.Fatalf("fs_issues %v", issues.Fields)
			}
			if got := paths(h.index()); slices.Contains(got, arch(pipe)) || !slices.Contains(got, arch(filepath.Join(src, "a.txt"))) {
				t.Fatalf("index %v", got)
			}
		})
	}
}

// Files that vanish between the walk listing them and the archive reading them are warnings
// naming the path (not errors, so fail_fast goes on) and deletions in the consistency report,
// where the consistency policy decides.
func TestVanishedFilesAreReported(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{jobspec.ConsistencyWarn, jobspec.ConsistencyFail, jobspec.ConsistencyIgnore} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			src := t.TempDir()
			for _, f := range []string{"a.txt", "b.txt", "d.txt", "e/inner.txt", "f.txt"} {
				write(t, filepath.Join(src, f), f)
			}
			if err := os.Symlink("a.txt", filepath.Join(src, "c.link")); err != nil {
				t.Fatal(err)
			}
			remove := func(name string) func() {
				return func() {
					if err := os.RemoveAll(filepath.Join(src, name)); err != nil {
						t.Error(err)
					}
				}
			}
			// d.txt was listed with the directory but is gone before it is opened; c.link and e
			// were lstat'ed but are gone before they are read; b.txt, a regular file, is listed
			// only (packaging stats files through the open handle) and gone before its open.
			backup.InjectAfterCopy(filepath.Join(src, "a.txt"), remove("d.txt"))
			for _, name := range []string{"b.txt", "c.link", "e"} {
				backup.InjectBeforeOpen(filepath.Join(src, name), remove(name))
			}
			h := newHarness(t)
			h.sequential = true // a.txt's hook removes d.txt before the walk lstats it
			sum, err := h.run(context.Background(), fsSpec(t, func(fs *jobspec.FilesystemSource) {
				fs.ConsistencyPolicy = policy
				fs.ErrorPolicy = jobspec.ErrorFailFast
				fs.PreScan = false // its readdir of e would run e's hook
			}, src))
			vanished := []string{"b.txt", "c.link", "d.txt", "e"}

			issues := h.events.Find("fs_issues")
			if issues == nil || issues.Level != backup.LevelWarn || issues.Fields["warnings_total"].(int64) != 4 ||
				issues.Fields["errors_total"].(int64) != 0 {
				t.Fatalf("fs_issues event %+v (run err %v)", issues, err)
			}
			warned, _ := json.Marshal(issues.Fields["warnings"])
			for _, name := range vanished {
				if !strings.Contains(string(warned), `"path":"`+arch(filepath.Join(src, name))+`"`) {
					t.Fatalf("no warning names %s: %s", name, warned)
				}
			}

			cons := h.events.Find("source_consistency")
			switch policy {
			case jobspec.ConsistencyFail:
				var be *backup.Error
				if !errors.As(err, &be) || be.Code != backup.CodeSourceConsistency {
					t.Fatalf("err = %v", err)
				}
			case jobspec.ConsistencyIgnore:
				if err != nil || cons != nil {
					t.Fatalf("err=%v event=%v", err, cons)
				}
			case jobspec.ConsistencyWarn:
				if err != nil || cons == nil {
					t.Fatalf("err=%v event=%v", err, cons)
				}
				report, _ := json.Marshal(cons.Fields["report"])
				if !strings.Contains(string(report), `"deleted_total":4`) {
					t.Fatalf("report %s", report)
				}
				var r struct {
					Sample []struct {
						Path, Reason string
						Before       *struct {
							SizeBytes int64 `json:"size_bytes"`
						}
					}
				}
				json.Unmarshal(report, &r)
				var got []string
				for _, s := range r.Sample {
					got = append(got, s.Path)
					if s.Reason != "stat_after_missing" {
						t.Fatalf("sample %+v", s)
					}
					// A file gone before it was opened was never stat'ed: no fingerprint from
					// before (the spec's before is optional); a symlink has the walk's.
					if s.Path == arch(filepath.Join(src, "b.txt")) && s.Before != nil {
						t.Fatalf("b.txt sample has a fingerprint nobody took: %s", report)
					}
					if s.Path == arch(filepath.Join(src, "c.link")) && (s.Before == nil || s.Before.SizeBytes != 5) {
						t.Fatalf("c.link sample lacks the walk's fingerprint: %s", report)
					}
				}
				var want []string
				for _, name := range vanished {
					want = append(want, arch(filepath.Join(src, name)))
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("samples %v, want %v", got, want)
				}
				p := arch(src)
				if got := paths(h.index()); !slices.Equal(got, []string{p, p + "/a.txt", p + "/e", p + "/f.txt"}) {
					t.Fatalf("entries %v", got)
				}
				if sum.Filesystem.WarningsTotal != 4 || !h.exists(targets.CompleteName) {
					t.Fatalf("summary %+v", sum.Filesystem)
				}
			}
		})
	}
}

// A legacy root that is a symlink to a directory is read through the link, as the walker's
// comment and the spec's root semantics say (the root's own entries, relative to it).
func TestLegacyRootSymlinkIsFollowed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "real", "sub", "f"), "x")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "real"), link); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	s := spec(t, `{"v":1,"type":"filesystem","source":{"root":"`+link+`"},"target":{"type":"local_dir","base_dir":"/bk"}}`, nil)
	if _, err := h.run(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if got := paths(h.index()); !slices.Equal(got, []string{"sub", "sub/f"}) {
		t.Fatalf("entries %v", got)
	}
}

// When packing fails while a part is being uploaded, the run ends with the packing error at once:
// it must not wait for an upload whose result would be thrown away (a whole part on WebDAV).
func TestPackingFailureAbandonsTheUploadInFlight(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	b := make([]byte, 1800<<10) // one part cut (1 MiB), not two
	rand.Read(b)
	write(t, filepath.Join(src, "a-random.bin"), string(b))
	write(t, filepath.Join(src, "zz-bad.txt"), "unreadable")
	backup.InjectOpenFault(filepath.Join(src, "zz-bad.txt"), syscall.EACCES)
	h := newHarness(t)
	// The upload of every part blocks until its context ends: nobody releases it.
	h.target = &gate{Target: h.target, staging: h.staging, release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := h.run(context.Background(), fsSpec(t, nil, src))
		done <- err
	}()
	// A liveness bound, not a timing: the old code waited for the blocked upload forever.
	wait := time.Minute
	if d, ok := t.Deadline(); ok {
		wait = time.Until(d) - 5*time.Second
	}
	select {
	case err := <-done:
		var be *backup.Error
		if !errors.As(err, &be) || be.Code == "" || errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want the walk's failure", err)
		}
	case <-time.After(wait):
		t.Fatal("the run waited for an upload it had abandoned")
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// fsWarnings returns the run's fs_issues warnings as path -> message.
func fsWarnings(t *testing.T, h *harness) map[string]string {
	t.Helper()
	ev := h.events.Find("fs_issues")
	if ev == nil {
		return nil
	}
	raw, _ := json.Marshal(ev.Fields["warnings"])
	var ws []struct{ Path, Message string }
	if err := json.Unmarshal(raw, &ws); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, w := range ws {
		out[w.Path] = w.Message
	}
	return out
}

// symlink_policy follow archives a link as what it points to, under the link's path: a file
// link as a file with the target's content, a directory link (also one leading out of the
// source) descended as a directory. A link back to an ancestor, a dangling link and a chain of
// links that never resolves are warnings, and the run, under fail_fast, still succeeds.
func TestSymlinkFollow(t *testing.T) {
	t.Parallel()
	for _, sequential := range []bool{false, true} { // read-ahead and the streaming path
		t.Run(fmt.Sprint("sequential=", sequential), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			src, outside := filepath.Join(dir, "src"), filepath.Join(dir, "outside")
			write(t, filepath.Join(src, "f.txt"), "hello")
			write(t, filepath.Join(src, "d", "g.txt"), "gee")
			write(t, filepath.Join(outside, "x.txt"), "far away")
			if err := os.Mkdir(filepath.Join(src, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			symlink(t, "f.txt", filepath.Join(src, "flink"))
			symlink(t, "d", filepath.Join(src, "dlink"))
			symlink(t, outside, filepath.Join(src, "ext"))
			symlink(t, "..", filepath.Join(src, "sub", "up"))
			symlink(t, "nowhere", filepath.Join(src, "dangling"))
			symlink(t, "ping", filepath.Join(src, "pong")) // a chain that never resolves
			symlink(t, "pong", filepath.Join(src, "ping"))
			h := newHarness(t)
			h.sequential = sequential
			sum, err := h.run(context.Background(), fsSpec(t, func(fs *jobspec.FilesystemSource) {
				fs.SymlinkPolicy = jobspec.SymlinkFollow
				fs.ErrorPolicy = jobspec.ErrorFailFast
			}, src))
			if err != nil {
				t.Fatal(err)
			}
			p := arch(src)
			kinds := map[string]string{}
			hashes := map[string]any{}
			var got []string
			for _, e := range h.index() {
				got = append(got, e["path"].(string))
				kinds[e["path"].(string)] = e["kind"].(string)
				hashes[e["path"].(string)] = e["hash"]
			}
			want := []string{p, p + "/d", p + "/d/g.txt", p + "/dlink", p + "/dlink/g.txt", p + "/ext", p + "/ext/x.txt",
				p + "/f.txt", p + "/flink", p + "/sub"}
			if !slices.Equal(got, want) {
				t.Fatalf("entries\n got %v\nwant %v", got, want)
			}
			for _, f := range []string{"/flink", "/dlink/g.txt", "/ext/x.txt"} {
				if kinds[p+f] != "file" {
					t.Fatalf("%s is %q, want file", f, kinds[p+f])
				}
			}
			for _, d := range []string{"/dlink", "/ext"} {
				if kinds[p+d] != "dir" {
					t.Fatalf("%s is %q, want dir", d, kinds[p+d])
				}
			}
			if hashes[p+"/flink"] != hashes[p+"/f.txt"] || hashes[p+"/dlink/g.txt"] != hashes[p+"/d/g.txt"] {
				t.Fatalf("followed files do not hold their targets' content: %v", hashes)
			}
			w := fsWarnings(t, h)
			if len(w) != 4 || !strings.Contains(w[p+"/sub/up"], "loop") || !strings.Contains(w[p+"/dangling"], "dangling") ||
				!strings.Contains(w[p+"/ping"], "too many levels") || !strings.Contains(w[p+"/pong"], "too many levels") {
				t.Fatalf("warnings %v", w)
			}
			if sum.Filesystem.WarningsTotal != 4 || sum.Filesystem.ErrorsTotal != 0 || !h.exists(targets.CompleteName) {
				t.Fatalf("summary %+v", sum.Filesystem)
			}
		})
	}
}

// Two links leading into each other are each followed once, then recognised by the (device,
// inode) of the directories on the current path: the walk ends.
func TestSymlinkFollowMutualLoopEnds(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	write(t, filepath.Join(src, "a", "fa"), "a")
	write(t, filepath.Join(src, "b", "fb"), "b")
	symlink(t, "../b", filepath.Join(src, "a", "tob"))
	symlink(t, "../a", filepath.Join(src, "b", "toa"))
	h := newHarness(t)
	sum, err := h.run(context.Background(), fsSpec(t, func(fs *jobspec.FilesystemSource) {
		fs.SymlinkPolicy = jobspec.SymlinkFollow
	}, src))
	if err != nil {
		t.Fatal(err)
	}
	p := arch(src)
	want := []string{p, p + "/a", p + "/a/fa", p + "/a/tob", p + "/a/tob/fb", p + "/b", p + "/b/fb", p + "/b/toa", p + "/b/toa/fa"}
	if got := paths(h.index()); !slices.Equal(got, want) {
		t.Fatalf("entries\n got %v\nwant %v", got, want)
	}
	w := fsWarnings(t, h)
	if len(w) != 2 || !strings.Contains(w[p+"/a/tob/toa"], "loop") || !strings.Contains(w[p+"/b/toa/tob"], "loop") {
		t.Fatalf("warnings %v", w)
	}
	if sum.Filesystem.WarningsTotal != 2 {
		t.Fatalf("summary %+v", sum.Filesystem)
	}
}
