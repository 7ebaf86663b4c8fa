package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	xwebdav "golang.org/x/net/webdav"

	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// TestMain removes the bastion binary the end-to-end tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// bastionBinary builds the real bastion command once per test run.
func bastionBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bastion-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "bastion")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// hubProcess is a bastion Hub running as a child process.
type hubProcess struct {
	cmd  *exec.Cmd
	base string
	logs *syncBuf
	done chan struct{}
}

// spawn runs the bastion binary with args (and env added to the test's environment) until the
// test ends; a failed test shows what it printed.
func spawn(t *testing.T, what string, args []string, env ...string) *hubProcess {
	t.Helper()
	p := &hubProcess{cmd: exec.Command(bastionBinary(t), args...), logs: &syncBuf{}, done: make(chan struct{})}
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", what, p.logs.String())
		}
	})
	return p
}

func startHubProcess(t *testing.T, dataDir string, extra ...string) *hubProcess {
	t.Helper()
	port := testtool.FreePort(t)
	p := spawn(t, "hub", append([]string{"--data-dir", dataDir, "--port", fmt.Sprint(port)}, extra...), "BASTION_LOG=debug")
	p.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-p.done:
			t.Fatalf("hub exited during start:\n%s", p.logs.String())
		default:
		}
		if resp, err := http.Get(p.base + "/api/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub never became healthy:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling an external process until a deadline
	}
}

// kill stops the process with SIGKILL: no cleanup, no final writes.
func (p *hubProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// client logs in to the Hub (running setup first when needed).
func (p *hubProcess) client(t *testing.T) *apitest.Client {
	t.Helper()
	return (&apitest.Hub{URL: p.base}).Login(t)
}

// poll calls cond until it holds or the test's deadline passes.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Minute)
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling observable state, not synchronising on time
	}
}

func createJob(t *testing.T, c *apitest.Client, name string, spec map[string]any) string {
	t.Helper()
	st, body := c.Post(t, "/api/jobs", map[string]any{"name": name, "overlap_policy": "queue", "spec": spec})
	if st != http.StatusOK {
		t.Fatalf("create job: %d %v", st, body)
	}
	return body["id"].(string)
}

func runNow(t *testing.T, c *apitest.Client, jobID string) string {
	t.Helper()
	st, body := c.Post(t, "/api/jobs/"+jobID+"/run", nil)
	if st != http.StatusOK || body["status"] != "queued" {
		t.Fatalf("run now: %d %v", st, body)
	}
	return body["run_id"].(string)
}

func waitRunEnd(t *testing.T, c *apitest.Client, runID string) map[string]any {
	t.Helper()
	var run map[string]any
	poll(t, "run "+runID, func() bool {
		st, body := c.Get(t, "/api/runs/"+runID)
		if st != http.StatusOK {
			t.Fatalf("get run: %d %v", st, body)
		}
		run = body
		return body["status"] != "queued" && body["status"] != "running"
	})
	return run
}

func waitOp(t *testing.T, c *apitest.Client, opID string) map[string]any {
	t.Helper()
	var op map[string]any
	poll(t, "operation "+opID, func() bool {
		_, op = c.Get(t, "/api/operations/"+opID)
		return op["status"] != "running"
	})
	return op
}

func eventKinds(t *testing.T, c *apitest.Client, path string) []string {
	t.Helper()
	var kinds []string
	for _, e := range c.Do(t, "GET", path, nil).JSONArray(t) {
		kinds = append(kinds, e.(map[string]any)["kind"].(string))
	}
	return kinds
}

// requireOneSnapshot fails unless the job lists exactly one snapshot, present, of runID.
func requireOneSnapshot(t *testing.T, c *apitest.Client, jobID, runID string) {
	t.Helper()
	st, list := c.Get(t, "/api/jobs/"+jobID+"/snapshots")
	items, _ := list["items"].([]any)
	if st != http.StatusOK || len(items) != 1 || items[0].(map[string]any)["run_id"] != runID || items[0].(map[string]any)["status"] != "present" {
		t.Fatalf("snapshots: %d %v", st, list)
	}
}

// restoreToHubAndVerify restores runID into a fresh directory on the Hub, compares it with src,
// and checks that a verify of the run succeeds.
func restoreToHubAndVerify(t *testing.T, c *apitest.Client, runID, src string) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "restored")
	st, body := c.Post(t, "/api/runs/"+runID+"/restore", map[string]any{
		"destination": map[string]any{"type": "local_fs", "node_id": "hub", "directory": dest}, "conflict_policy": "fail"})
	if st != http.StatusOK {
		t.Fatalf("restore: %d %v", st, body)
	}
	if op := waitOp(t, c, body["op_id"].(string)); op["status"] != "success" {
		t.Fatalf("restore operation: %v", op)
	}
	testtool.CompareTrees(t, src, testtool.ArchivePath(dest, src), false)

	_, body = c.Post(t, "/api/runs/"+runID+"/verify", nil)
	if op := waitOp(t, c, body["op_id"].(string)); op["status"] != "success" || op["summary"].(map[string]any)["ok"] != true {
		t.Fatalf("verify: %v", op)
	}
}

// damagedPartFailsVerify overwrites bytes inside part, a stored payload part of runID, and checks
// that a verify of the run fails naming that part.
func damagedPartFailsVerify(t *testing.T, c *apitest.Client, runID, part string) {
	t.Helper()
	f, err := os.OpenFile(part, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("damage"), 1000)
	f.Close()
	_, body := c.Post(t, "/api/runs/"+runID+"/verify", nil)
	if op := waitOp(t, c, body["op_id"].(string)); op["status"] != "failed" || !strings.Contains(fmt.Sprint(op["error"]), filepath.Base(part)) {
		t.Fatalf("verify of a damaged part: %v", op)
	}
}

// TestBackupAndRestoreThroughTheAPI drives the real bastion process the way an operator does:
// create a filesystem job, run it, see the snapshot, restore it into a new directory and compare,
// then verify it, and verify again after damaging a part. Local directory and a real WebDAV
// server (rclone), with and without age encryption.
func TestBackupAndRestoreThroughTheAPI(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	p := startHubProcess(t, data)
	c := p.client(t)
	src := filepath.Join(t.TempDir(), "src")
	testtool.BuildTree(t, src, 3<<20)

	dav := t.TempDir()
	davURL, user, pass := testtool.StartRcloneWebDAV(t, dav)
	if st, body := c.Put(t, "/api/secrets/webdav/nas", map[string]string{"username": user, "password": pass}); st/100 != 2 {
		t.Fatalf("store webdav secret: %d %v", st, body)
	}

	for _, tc := range []struct {
		name   string
		webdav bool
		age    bool
	}{{"LocalDir", false, false}, {"LocalDirAge", false, true}, {"WebDAV", true, false}, {"WebDAVAge", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "bk")
			target := map[string]any{"type": "local_dir", "base_dir": base, "part_size_bytes": 1 << 20}
			if tc.webdav {
				base = dav
				target = map[string]any{"type": "webdav", "base_url": davURL, "secret_name": "nas", "part_size_bytes": 1 << 20}
			}
			spec := map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{src}}, "target": target}
			if tc.age {
				spec["pipeline"] = map[string]any{"encryption": map[string]any{"type": "age_x25519", "key_name": "e2e"}}
			}
			job := createJob(t, c, "e2e "+tc.name, spec)
			runID := runNow(t, c, job)
			if run := waitRunEnd(t, c, runID); run["status"] != "success" {
				t.Fatalf("run: %v\nevents %v", run, eventKinds(t, c, "/api/runs/"+runID+"/events"))
			}
			kinds := eventKinds(t, c, "/api/runs/"+runID+"/events")
			if kinds[len(kinds)-1] != "complete" {
				t.Fatalf("run events: %v", kinds)
			}
			requireOneSnapshot(t, c, job, runID)
			runDir := filepath.Join(base, job, runID)
			manifest, err := os.ReadFile(filepath.Join(runDir, "manifest.json"))
			if err != nil || strings.Contains(string(manifest), `"encryption": "age"`) != tc.age {
				t.Fatalf("manifest: %s %v", manifest, err)
			}

			restoreToHubAndVerify(t, c, runID, src)
			damagedPartFailsVerify(t, c, runID, filepath.Join(runDir, "payload.part000002"))
		})
	}
	if strings.Contains(p.logs.String(), pass) {
		t.Fatal("the WebDAV password appears in the Hub's logs")
	}
}

// TestKilledHubFailsTheRunAndCleansUp kills the real bastion process (SIGKILL) in the middle of
// a backup, after its first part reached the target, and restarts it. The run must end failed
// with a clear error and event, no complete.json may exist, and incomplete cleanup must remove
// what the run left on the target.
//
// The target is a WebDAV server in the test process that stores the first part and holds every
// later upload open until the Hub is gone, so the kill always lands mid-run, however fast the
// machine.
//
// Cleanup only touches runs older than --incomplete-cleanup-days (7 by default). Rather than
// wait a week or lower the setting to 0 (which disables cleanup), the test moves the run's
// started_at back 8 days in the database while the Hub is down, exactly as if the crash had
// happened then.
func TestKilledHubFailsTheRunAndCleansUp(t *testing.T) {
	t.Parallel()
	data, src := t.TempDir(), filepath.Join(t.TempDir(), "src")
	// 3 MiB of incompressible data in 1 MiB parts: at least three parts.
	for i := 0; i < 3; i++ {
		testtool.WriteFile(t, filepath.Join(src, fmt.Sprintf("f%d.bin", i)), testtool.RandBytes(1<<20, uint64(i)), 0o644, testtool.TreeTime)
	}
	dav := startGatedDAV(t)
	p := startHubProcess(t, data)
	c := p.client(t)
	if st, body := c.Put(t, "/api/secrets/webdav/nas", map[string]string{"username": dav.user, "password": dav.pass}); st/100 != 2 {
		t.Fatalf("store webdav secret: %d %v", st, body)
	}
	job := createJob(t, c, "crash", map[string]any{"v": 1, "type": "filesystem",
		"source": map[string]any{"paths": []string{src}},
		"target": map[string]any{"type": "webdav", "base_url": dav.url, "secret_name": "nas", "part_size_bytes": 1 << 20}})
	runID := runNow(t, c, job)
	runDir := filepath.Join(dav.dir, job, runID)
	dav.waitMidRun(t)
	p.kill(t)

	for _, name := range []string{"complete.json", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(runDir, name)); !os.IsNotExist(err) {
			t.Fatalf("%s after a kill mid-run: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(runDir, "payload.part000001")); err != nil {
		t.Fatalf("the first part is not on the target: %v", err)
	}
	// Age the run past the cleanup delay, while no Hub holds the database.
	db, err := storage.Open(context.Background(), filepath.Join(data, "bastion.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().Exec(context.Background(), `UPDATE runs SET started_at = started_at - 8*86400 WHERE id = ?`, runID); err != nil {
		t.Fatal(err)
	}
	db.Close()

	p = startHubProcess(t, data)
	c = p.client(t)
	run := waitRunEnd(t, c, runID)
	if run["status"] != "failed" || run["error"] != "hub_restarted" {
		t.Fatalf("run after restart: %v", run)
	}
	evs := c.Do(t, "GET", "/api/runs/"+runID+"/events", nil).JSONArray(t)
	last := evs[len(evs)-1].(map[string]any)
	if last["kind"] != "failed" || last["level"] != "error" || last["message"] == "" {
		t.Fatalf("last event: %v", last)
	}
	// The files go before the task is marked done, so wait for the task, then look at the target.
	poll(t, "incomplete cleanup task done", func() bool {
		st, body := c.Get(t, "/api/maintenance/incomplete-cleanup/"+runID)
		task, _ := body["task"].(map[string]any)
		return st == http.StatusOK && task != nil && task["status"] == "done"
	})
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Fatalf("cleanup task is done but the run directory is still there: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(data, "runs")); len(entries) != 0 {
		t.Fatalf("staging left in the data directory: %v", entries)
	}
	if _, body := c.Get(t, "/api/jobs/"+job+"/snapshots"); len(body["items"].([]any)) != 0 {
		t.Fatalf("a failed run shows as a snapshot: %v", body)
	}
}

// partGate lets the first payload part of a run through and holds every later part's upload open
// until its client goes away (or the test ends): a backup through it can never finish.
type partGate struct {
	firstPart chan struct{} // closed once a first part is stored
	held      chan struct{} // closed once a later part's upload is held
	release   chan struct{} // closed when the test ends
	firstOnce sync.Once
	heldOnce  sync.Once
}

func newPartGate() *partGate {
	return &partGate{firstPart: make(chan struct{}), held: make(chan struct{}), release: make(chan struct{})}
}

// wrap gates the part uploads on their way to next; every other request goes through.
func (g *partGate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := path.Base(r.URL.Path)
		if r.Method != http.MethodPut || !strings.HasPrefix(name, "payload.part") {
			next.ServeHTTP(w, r)
			return
		}
		if name == "payload.part000001" {
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			if rec.status == 0 || rec.status/100 == 2 {
				g.firstOnce.Do(func() { close(g.firstPart) })
			}
			return
		}
		// Read the body first: only then does the server notice the client's connection close.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		g.heldOnce.Do(func() { close(g.held) })
		select {
		case <-r.Context().Done():
		case <-g.release:
			http.Error(w, "test over", http.StatusServiceUnavailable)
		}
	})
}

// serve starts a test server for h, whose part uploads go through g.
func (g *partGate) serve(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(g.release) }) // runs first: a held upload must not keep Close waiting
	return srv
}

// waitMidRun waits until the first part is stored and a later one is held.
func (g *partGate) waitMidRun(t *testing.T) {
	t.Helper()
	deadline := time.After(5 * time.Minute)
	for _, c := range []struct {
		ch   chan struct{}
		what string
	}{{g.firstPart, "the first part on the target"}, {g.held, "the upload of a later part"}} {
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", c.what)
		}
	}
}

// gatedDAV is a WebDAV server (golang.org/x/net/webdav, in process) over dir behind a partGate.
type gatedDAV struct {
	*partGate
	url, dir, user, pass string
}

func startGatedDAV(t *testing.T) *gatedDAV {
	t.Helper()
	d := &gatedDAV{partGate: newPartGate(), dir: t.TempDir(), user: "bastion", pass: "gated-dav-pw"}
	gated := d.wrap(&xwebdav.Handler{Prefix: "/dav", FileSystem: xwebdav.Dir(d.dir), LockSystem: xwebdav.NewMemLS()})
	srv := d.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != d.user || p != d.pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="dav"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		gated.ServeHTTP(w, r)
	}))
	d.url = srv.URL + "/dav/"
	return d
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// TestArchiveWithCascadeDeletesUnpinnedSnapshots: archiving a job with cascade_snapshots queues
// the deletion of its present snapshots except the pinned ones, and the delete loop removes them
// from the target.
func TestArchiveWithCascadeDeletesUnpinnedSnapshots(t *testing.T) {
	t.Parallel()
	p := startHubProcess(t, t.TempDir())
	c := p.client(t)
	src, base := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "bk")
	testtool.WriteFile(t, filepath.Join(src, "a.txt"), []byte("hello"), 0o644, testtool.TreeTime)
	job := createJob(t, c, "cascade", map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{src}},
		"target": map[string]any{"type": "local_dir", "base_dir": base}})
	var runsIDs []string
	for i := 0; i < 3; i++ {
		id := runNow(t, c, job)
		if run := waitRunEnd(t, c, id); run["status"] != "success" {
			t.Fatalf("run %d: %v", i, run)
		}
		runsIDs = append(runsIDs, id)
	}
	pinned := runsIDs[1]
	if st, _ := c.Post(t, "/api/jobs/"+job+"/snapshots/"+pinned+"/pin", nil); st != http.StatusNoContent {
		t.Fatal("pin")
	}
	if st, body := c.Post(t, "/api/jobs/"+job+"/archive?cascade_snapshots=true", nil); st != http.StatusNoContent {
		t.Fatalf("archive: %d %v", st, body)
	}
	status := func(runID string) string {
		_, s := c.Get(t, "/api/jobs/"+job+"/snapshots/"+runID)
		return fmt.Sprint(s["status"])
	}
	for _, id := range []string{runsIDs[0], runsIDs[2]} {
		poll(t, "snapshot "+id+" deleted", func() bool { return status(id) == "deleted" })
		if _, err := os.Stat(filepath.Join(base, job, id)); !os.IsNotExist(err) {
			t.Fatalf("deleted snapshot still on the target: %v", err)
		}
	}
	if s := status(pinned); s != "present" {
		t.Fatalf("pinned snapshot is %s", s)
	}
	if _, err := os.Stat(filepath.Join(base, job, pinned, "complete.json")); err != nil {
		t.Fatalf("pinned snapshot's files: %v", err)
	}
}
