package httpapi_test

// The API contract (issue 13): every route the router serves has at least one entry in
// testdata/contract.json, which pins the status code and the JSON field names of the answer (the
// original's names, from its Rust structs, wherever the original has the route). Extra fields in
// an answer are allowed; a missing pinned field, another status or a route without an entry fails
// TestAPIContract.
//
// ADDING A ROUTE: add one object to testdata/contract.json (entries run in file order, against one
// Hub, so put an entry that deletes or revokes something after the entries that still need it):
//
//	{"route": "POST /api/things/{id}/poke",        // method + chi pattern, as chi.Walk prints it
//	 "path": "/api/things/{{job}}/poke",            // {{name}}: a fixture of setupContract or a saved value
//	 "body": {"force": true},                        // optional; {{name}} works inside strings too
//	 "status": 200,
//	 "fields": ["id", "items[].name", "spec.v"],     // dotted paths; "[]" is the first element of an array
//	 "save": {"thing": "id"},                        // optional: keep answer fields for later entries
//	 "source": "original: crates/bastion-http/src/http/things.rs ThingResponse"}  // or "ours: …"
//
// Error answers pin the code instead ("error": "thing_not_found"), which checks the envelope
// {error, message}. Streams (WebSockets, /metrics, /docs, the web UI) pin "content_type" (a
// prefix) or "ws": true (a real handshake) instead of fields. "as" picks the client: admin (the
// default: session + CSRF), anon (never logged in), login (for POST /api/auth/login), token (a
// viewer's API token), agent (the key POST /agent/enroll saved as agent2_key), spare (a second
// admin session, for logout), nocsrf (an admin session that sends no CSRF token).
//
// Fixtures (setupContract): job (a Hub job, its spec on src → base), run (its successful run with
// a real snapshot and events), run2 (a second snapshot, deleted by the entries), failed_run (a
// failed run in the cleanup queue), notification (queued for failed_run), agent (a connected
// agent), missing (an id nothing has), dav_url (a real WebDAV server, credential "share"),
// victim_session (a session the entries revoke), and the paths src, src_rel, tmp, base,
// restore_dir. Secrets webdav/dav, smtp/mail and wecom-bot/bot exist.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/engine/bulk"
	"github.com/bastion-backup/bastion/engine/drills"
	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/scheduler"
	"github.com/bastion-backup/bastion/engine/snapshots"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// contractEntry is one request of testdata/contract.json.
type contractEntry struct {
	Route       string            `json:"route"`
	Name        string            `json:"name,omitempty"`
	As          string            `json:"as,omitempty"`
	Path        string            `json:"path"`
	Body        json.RawMessage   `json:"body,omitempty"`
	Status      int               `json:"status"`
	Fields      []string          `json:"fields,omitempty"`
	Error       string            `json:"error,omitempty"`
	ContentType string            `json:"content_type,omitempty"`
	WS          bool              `json:"ws,omitempty"`
	Save        map[string]string `json:"save,omitempty"`
	Source      string            `json:"source"`
}

// fallbackRoute names the web UI, served by the router's NotFound handler rather than a route.
const fallbackRoute = "GET (web UI fallback)"

var placeholder = regexp.MustCompile(`\{\{([a-z0-9_]+)\}\}`)

// contractHub is the one Hub every entry runs against, with every optional service present.
type contractHub struct {
	*backupHub
	sock    *agentsock.Hub
	notify  *notify.Service
	clients map[string]*apitest.Client
	vars    map[string]string
}

func TestAPIContract(t *testing.T) {
	t.Parallel()
	ch := setupContract(t)
	entries := loadContract(t)

	// Coverage first: every route has an entry, every entry names a route.
	routes := map[string]bool{fallbackRoute: true}
	if err := chi.Walk(ch.Handler.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes[method+" "+route] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, e := range entries {
		covered[e.Route] = true
		if !routes[e.Route] {
			t.Errorf("testdata/contract.json: %q is not a route", e.Route)
		}
		if e.Source == "" {
			t.Errorf("testdata/contract.json: %s %s says nothing of where its fields come from (source)", e.Route, e.Name)
		}
	}
	var missing []string
	for r := range routes {
		if !covered[r] {
			missing = append(missing, r)
		}
	}
	sort.Strings(missing)
	for _, r := range missing {
		t.Errorf("route %q has no entry in testdata/contract.json", r)
	}

	// Then every entry, in order: later entries use what earlier ones created.
	for _, e := range entries {
		name := strings.NewReplacer("/", "_", " ", "_", "{", "", "}", "").Replace(e.Route)
		if e.Name != "" {
			name += "_" + e.Name
		}
		t.Run(name, func(t *testing.T) { ch.check(t, e) })
	}
}

func loadContract(t *testing.T) []contractEntry {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "contract.json"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []contractEntry
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		t.Fatalf("testdata/contract.json: %v", err)
	}
	return entries
}

// expand replaces the {{name}} placeholders of s; an unknown name fails the test.
func (ch *contractHub) expand(t *testing.T, s string) string {
	t.Helper()
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		v, ok := ch.vars[m[2:len(m)-2]]
		if !ok {
			t.Fatalf("unknown fixture %s", m)
		}
		return v
	})
}

func (ch *contractHub) check(t *testing.T, e contractEntry) {
	method, _, _ := strings.Cut(e.Route, " ")
	if e.Route == fallbackRoute {
		method = http.MethodGet
	}
	path := ch.expand(t, e.Path)
	who := e.As
	if who == "" {
		who = "admin"
	}
	c, ok := ch.clients[who]
	if !ok {
		t.Fatalf("unknown client %q", who)
	}
	if who == "agent" {
		// The agent that POST /agent/enroll enrolled.
		c.Header.Set("Authorization", "Bearer "+ch.expand(t, "{{agent2_key}}"))
	}
	if e.WS {
		ch.checkWS(t, c, path, e)
		return
	}
	var body any
	if len(e.Body) > 0 {
		body = ch.expand(t, string(e.Body))
	}
	resp := c.Do(t, method, path, body)
	if resp.Status != e.Status {
		var logs []string
		if id := resp.Header.Get("X-Request-Id"); id != "" && resp.Status >= 500 {
			for _, l := range strings.Split(ch.Logs.String(), "\n") {
				if strings.Contains(l, id) {
					logs = append(logs, l)
				}
			}
		}
		t.Fatalf("%s %s: status %d, want %d: %.600s\n%s", method, path, resp.Status, e.Status, resp.Body, strings.Join(logs, "\n"))
	}
	if e.ContentType != "" {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, e.ContentType) {
			t.Errorf("Content-Type %q, want %s…", ct, e.ContentType)
		}
	}
	if e.Error == "" && len(e.Fields) == 0 && len(e.Save) == 0 {
		return
	}
	var doc any
	if err := json.Unmarshal(resp.Body, &doc); err != nil {
		t.Fatalf("answer is not JSON: %.300q", resp.Body)
	}
	if e.Error != "" {
		m, _ := doc.(map[string]any)
		if m["error"] != e.Error {
			t.Errorf("error %v, want %q: %s", m["error"], e.Error, resp.Body)
		}
		if msg, ok := m["message"].(string); !ok || msg == "" {
			t.Errorf("error envelope without a message: %s", resp.Body)
		}
	}
	for _, f := range e.Fields {
		if err := hasField(doc, f); err != nil {
			t.Errorf("field %s: %v\nanswer: %.1500s", f, err, resp.Body)
		}
	}
	for name, f := range e.Save {
		v, err := fieldValue(doc, f)
		if err != nil {
			t.Fatalf("save %s from %s: %v\nanswer: %.600s", name, f, err, resp.Body)
		}
		switch v := v.(type) {
		case string:
			ch.vars[name] = v
		case float64:
			ch.vars[name] = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			t.Fatalf("save %s from %s: %v is neither a string nor a number", name, f, v)
		}
	}
}

// checkWS opens the WebSocket at path as c would (its cookies and headers) and pins the status of
// the handshake.
func (ch *contractHub) checkWS(t *testing.T, c *apitest.Client, path string, e contractEntry) {
	u := strings.Replace(ch.URL, "http", "ws", 1) + path
	hdr := c.Header.Clone()
	hdr.Set("Origin", ch.URL)
	opts := &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: c.HTTP}
	conn, resp, err := websocket.Dial(t.Context(), u, opts)
	if conn != nil {
		defer conn.CloseNow()
	}
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if status != e.Status {
		t.Fatalf("WebSocket %s: status %d, want %d (%v)", path, status, e.Status, err)
	}
}

// fieldValue follows a dotted path ("items[].id", "[].name") through a decoded JSON document.
func fieldValue(doc any, path string) (any, error) {
	cur := doc
	for part := range strings.SplitSeq(path, ".") {
		key, arr := strings.CutSuffix(part, "[]")
		if key != "" {
			m, ok := cur.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%q: not an object (%T)", key, cur)
			}
			v, ok := m[key]
			if !ok {
				return nil, fmt.Errorf("%q is missing", key)
			}
			cur = v
		}
		if arr {
			a, ok := cur.([]any)
			if !ok {
				return nil, fmt.Errorf("%q: not an array (%T)", part, cur)
			}
			if len(a) == 0 {
				return nil, fmt.Errorf("%q: empty array, the fixture leaves nothing to check", part)
			}
			cur = a[0]
		}
	}
	return cur, nil
}

// hasField reports whether the pinned field is there; its value may be null, but a path may not
// go on through a null.
func hasField(doc any, path string) error {
	_, err := fieldValue(doc, path)
	return err
}

// setupContract starts the Hub with every service and the fixtures the entries name.
func setupContract(t *testing.T) *contractHub {
	t.Helper()
	ch := &contractHub{vars: map[string]string{}}
	ch.backupHub = startContractHub(t, ch)
	c := ch.c
	ctx := context.Background()
	tmp := t.TempDir()
	src, base := filepath.Join(tmp, "src"), filepath.Join(tmp, "bk")
	testtool.BuildTree(t, src, 64<<10)
	ch.vars["src"] = src
	ch.vars["src_rel"] = strings.TrimPrefix(src, "/")
	ch.vars["tmp"] = tmp
	ch.vars["base"] = base
	ch.vars["restore_dir"] = filepath.Join(tmp, "restored")
	ch.vars["missing"] = "00000000-0000-4000-8000-000000000000"

	// A real WebDAV server to browse, with a file in it.
	share := filepath.Join(tmp, "share")
	if err := os.MkdirAll(share, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, "a.txt"), []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	davURL, davUser, davPass := testtool.StartRcloneWebDAV(t, share)
	ch.vars["dav_url"] = davURL

	// Secrets, through the API: WebDAV credentials and both notification destinations.
	for _, s := range []struct {
		kind, name string
		body       any
	}{
		{"webdav", "dav", map[string]string{"username": "u", "password": "p"}},
		{"webdav", "share", map[string]string{"username": davUser, "password": davPass, "base_url": davURL}},
		{"smtp", "mail", map[string]any{"host": "127.0.0.1", "port": 25, "username": "", "password": "", "from": "a@example.com",
			"to": []string{"b@example.com"}, "tls": "none"}},
		{"wecom-bot", "bot", map[string]string{"webhook_url": "http://127.0.0.1:9/hook"}},
	} {
		if resp := c.Do(t, http.MethodPut, "/api/secrets/"+s.kind+"/"+s.name, s.body); resp.Status != http.StatusNoContent {
			t.Fatalf("put secret %s/%s: %s", s.kind, s.name, resp)
		}
	}

	// A job, through the API, and a successful run of it with a real snapshot and a few events.
	spec := fmt.Sprintf(`{"v":1,"type":"filesystem","source":{"paths":[%q]},"target":{"type":"local_dir","base_dir":%q}}`, src, base)
	st, job := c.Post(t, "/api/jobs", map[string]any{"name": "contract", "schedule": "0 3 * * *", "schedule_timezone": "UTC",
		"overlap_policy": "queue", "spec": json.RawMessage(spec)})
	if st != http.StatusOK {
		t.Fatalf("create job: %d %v", st, job)
	}
	jobID := job["id"].(string)
	ch.vars["job"], ch.vars["job_spec"] = jobID, spec
	run := uuidN(2, 1)
	ch.realSnapshot(t, jobID, run, src, base)
	ch.vars["run"] = run
	end := ch.Clock.Now().Unix()
	if err := ch.DB.Writer().AppendRunEvents(ctx, []storage.RunEvent{
		{RunID: run, TS: end, Level: "info", Kind: "start", Message: "start"},
		{RunID: run, TS: end, Level: "info", Kind: "complete", Message: "complete"},
	}); err != nil {
		t.Fatal(err)
	}
	// A second snapshot, to delete; and a failed run whose leftovers wait in the cleanup queue.
	run2 := uuidN(2, 2)
	ch.seedSnapshot(t, jobID, run2, base, end-3600, true)
	ch.vars["run2"] = run2
	failed := uuidN(2, 3)
	if err := ch.DB.Write(ctx, func(q storage.Q) error {
		if err := q.InsertRun(ctx, storage.Run{ID: failed, JobID: jobID, Status: storage.RunFailed, StartedAt: end - 60, EndedAt: &end}); err != nil {
			return err
		}
		_, err := q.EnqueueTask(ctx, storage.CleanupQueue, storage.Task{RunID: failed, JobID: jobID, NodeID: "hub", TargetType: "local_dir",
			TargetSnapshotJSON: `{"node_id":"hub","target":{"type":"local_dir","base_dir":"` + base + `"}}`, NextAttemptAt: end + 3600, CreatedAt: end})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ch.vars["failed_run"] = failed
	// A queued notification of the failed run, to each destination.
	if err := ch.DB.Write(ctx, func(q storage.Q) error {
		_, err := ch.notify.EnqueueForRun(ctx, q, notify.RunInfo{ID: failed, Status: storage.RunFailed}, notify.JobNotifications{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var nid string
	if err := ch.DB.Reader().QueryRow(ctx, `SELECT id FROM notifications ORDER BY id LIMIT 1`).Scan(&nid); err != nil {
		t.Fatalf("no notification was queued: %v", err)
	}
	ch.vars["notification"] = nid

	// A real agent, enrolled and connected.
	a, _ := connectAgent(t, ch.Hub, c, ch.sock, "nas")
	ch.vars["agent"] = a.ID()

	// Clients.
	_, tok := c.CreateToken(t, "scraper", httpapi.RoleViewer)
	spare := ch.Client(t)
	spare.Login(t, apitest.Username, apitest.Password)
	victim := ch.Client(t)
	victim.Login(t, apitest.Username, apitest.Password)
	var sessions struct {
		Items []struct {
			ID      string
			Current bool
		}
	}
	victim.Do(t, http.MethodGet, "/api/sessions", nil).Decode(t, &sessions)
	for _, s := range sessions.Items {
		if s.Current {
			ch.vars["victim_session"] = s.ID
		}
	}
	if ch.vars["victim_session"] == "" {
		t.Fatal("the session list does not mark the current session")
	}
	nocsrf := ch.Client(t)
	nocsrf.Login(t, apitest.Username, apitest.Password)
	nocsrf.CSRF = ""
	ch.clients = map[string]*apitest.Client{
		"nocsrf": nocsrf,
		"admin":  c, "anon": ch.Client(t), "login": ch.Client(t), "token": ch.BearerClient(t, tok), "spare": spare,
		"agent": {Hub: ch.Hub, HTTP: &http.Client{Timeout: time.Minute}, Header: http.Header{}},
	}
	return ch
}

// startContractHub starts the Hub with the snapshot and operation services, the run queue, the
// scheduler, agents, notifications, drills, the runtime configuration and a web UI. No background
// loop runs (no deletes, restores, runs or deliveries): what the entries queue stays queued, so
// every answer is the same on every run.
func startContractHub(t *testing.T, ch *contractHub) *backupHub {
	t.Helper()
	bh := &backupHub{dataDir: t.TempDir()}
	bh.Hub = apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		op := opener.New(opener.Config{Secrets: cfg.Secrets, Logger: cfg.Logger})
		bh.snaps = snapshots.New(snapshots.Config{DB: cfg.DB, Clock: cfg.Clock, Opener: op, Logger: cfg.Logger, IncompleteCleanupDays: 7})
		bh.ops = operations.New(operations.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger, DataDir: bh.dataDir, Opener: op})
		cfg.Snapshots, cfg.Operations = bh.snaps, bh.ops
		cfg.Drills = drills.New(drills.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger, Ops: bh.ops})
		cfg.DrillErrors = httpapi.DrillErrors{JobArchived: drills.ErrJobArchived, NoSnapshot: drills.ErrNoSnapshot}
		rq := runs.New(runs.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger})
		cfg.Runs = rq
		cfg.Scheduler = scheduler.New(scheduler.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger, Runs: rq})
		ch.sock = agentsock.New(agentsock.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger,
			Snapshots: agentsock.StoreSnapshots{DB: cfg.DB, Store: cfg.Secrets, Clock: cfg.Clock}})
		cfg.Agents = ch.sock
		cfg.Bulk = bulk.New(bulk.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger}) // never run: items stay queued
		svc, err := notify.New(notify.Options{DB: cfg.DB, Secrets: cfg.Secrets, Clock: cfg.Clock, Logger: cfg.Logger, RateEvery: -1})
		if err != nil {
			t.Fatal(err)
		}
		ch.notify, cfg.Notifications, cfg.OnSecretDeleted = svc, svc, svc.SecretDeleted
		cfg.Runtime = &httpapi.RuntimeConfig{}
		cfg.UI = fstestUI()
	}))
	t.Cleanup(ch.sock.Close)
	bh.c = bh.Login(t)
	return bh
}

// The original's public-metadata fields (a session route there) reach signed-in callers only:
// ours is open, and the public base URL is for users of the Hub, not for whoever can reach it.
func TestPublicMetadataBaseURLNeedsSession(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.PublicBaseURL = "https://backup.example.com"
		cfg.Runtime = &httpapi.RuntimeConfig{Fields: map[string]httpapi.RuntimeField{"public_base_url": {Value: "https://backup.example.com", Source: "cli"}}}
	}))
	c := hub.Login(t)
	if st, m := c.Get(t, "/api/control-plane/public-metadata"); st != http.StatusOK || m["public_base_url"] != "https://backup.example.com" ||
		m["source"] != "cli" || m["command_generation_ready"] != true || m["version"] != "test" {
		t.Fatalf("signed in: %d %v", st, m)
	}
	if st, m := hub.Client(t).Get(t, "/api/control-plane/public-metadata"); st != http.StatusOK || m["needs_setup"] != false {
		t.Fatalf("anonymous: %d %v", st, m)
	} else if _, ok := m["public_base_url"]; ok {
		t.Fatalf("anonymous caller got the public base URL: %v", m)
	}
}

// Cleanup tasks name their job, as the original's do; a task whose job is gone has "".
func TestCleanupTasksNameTheirJob(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job := uuidN(1, 1)
	bh.insertJob(t, job, fsSpec)
	ctx := context.Background()
	if err := bh.DB.Write(ctx, func(q storage.Q) error {
		for i, j := range []string{job, "gone"} {
			if _, err := q.EnqueueTask(ctx, storage.CleanupQueue, storage.Task{RunID: uuidN(2, i), JobID: j, NodeID: "hub",
				TargetType: "local_dir", TargetSnapshotJSON: "{}", NextAttemptAt: 1, CreatedAt: int64(1 + i)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []struct {
			RunID   string `json:"run_id"`
			JobName string `json:"job_name"`
		} `json:"items"`
	}
	resp := bh.c.Do(t, http.MethodGet, "/api/maintenance/incomplete-cleanup", nil)
	if err := json.Unmarshal(resp.Body, &list); err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, it := range list.Items {
		names[it.RunID] = it.JobName
	}
	if names[uuidN(2, 0)] != "job "+job[:8] || names[uuidN(2, 1)] != "" || len(names) != 2 {
		t.Fatalf("job names %v: %s", names, resp)
	}
	if _, m := bh.c.Get(t, "/api/maintenance/incomplete-cleanup/"+uuidN(2, 0)); m["task"].(map[string]any)["job_name"] != "job "+job[:8] {
		t.Fatalf("detail: %v", m)
	}
}
