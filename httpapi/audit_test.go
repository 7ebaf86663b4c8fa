package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/scheduler"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

// clientAddr is where the test's requests come from, as a trusted proxy on loopback says.
const clientAddr = "203.0.113.9"

type auditBundle struct {
	hub *apitest.Hub
}

// setupAudit starts a Hub with jobs, agents and secrets behind a trusted proxy on loopback, so
// that the client address of every request is clientAddr (X-Forwarded-For).
func setupAudit(t *testing.T) *auditBundle {
	t.Helper()
	var sock *agentsock.Hub
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		rq := runs.New(runs.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger})
		cfg.Runs = rq
		cfg.Scheduler = scheduler.New(scheduler.Config{DB: cfg.DB, Clock: cfg.Clock, Log: cfg.Logger, Runs: rq})
		sock = agentsock.New(agentsock.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger})
		cfg.Agents = sock
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	}))
	t.Cleanup(sock.Close)
	return &auditBundle{hub: hub}
}

// client is a client without a session whose requests come from clientAddr.
func (b *auditBundle) client(t *testing.T) *apitest.Client {
	c := b.hub.Client(t)
	c.Header.Set("X-Forwarded-For", clientAddr)
	return c
}

// do sends a request with the given request id.
func do(t *testing.T, c *apitest.Client, reqID, method, path string, body any) *apitest.Response {
	t.Helper()
	c.Header.Set("X-Request-Id", reqID)
	defer c.Header.Del("X-Request-Id")
	return c.Do(t, method, path, body)
}

// rows are every audit row, oldest first, once the queued ones are written.
func (b *auditBundle) rows(t *testing.T) []storage.AuditEntry {
	t.Helper()
	b.hub.FlushAudit(t)
	all, err := b.hub.DB.Reader().ListAudit(context.Background(), storage.AuditFilter{}, nil, 100000)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
		all[i], all[j] = all[j], all[i]
	}
	return all
}

func (b *auditBundle) row(t *testing.T, reqID string) storage.AuditEntry {
	t.Helper()
	var found []storage.AuditEntry
	for _, e := range b.rows(t) {
		if e.RequestID == reqID {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d audit rows with request id %s, want 1: %+v", len(found), reqID, found)
	}
	return found[0]
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// want checks an audit row field by field; a nil want means NULL.
type want struct {
	action, actorKind, outcome string
	status                     int
	userID                     any // int64 or nil
	username                   any // string or nil
	objectKind, objectID       any // string or nil; objectID "*" means any non-empty value
}

func (w want) check(t *testing.T, e storage.AuditEntry) {
	t.Helper()
	got := fmt.Sprintf("%s|%s|%s|%d|%v|%v|%v", e.Action, e.ActorKind, e.Outcome, e.Status, deref(e.UserID), deref(e.Username), deref(e.ObjectKind))
	exp := fmt.Sprintf("%s|%s|%s|%d|%v|%v|%v", w.action, w.actorKind, w.outcome, w.status, w.userID, w.username, w.objectKind)
	if got != exp {
		t.Errorf("audit row %s:\n got %s\nwant %s", e.RequestID, got, exp)
	}
	switch {
	case w.objectID == "*":
		if e.ObjectID == nil || *e.ObjectID == "" {
			t.Errorf("audit row %s: no object id", e.RequestID)
		}
	case fmt.Sprint(deref(e.ObjectID)) != fmt.Sprint(w.objectID):
		t.Errorf("audit row %s: object id %v, want %v", e.RequestID, deref(e.ObjectID), w.objectID)
	}
	if e.ClientIP != clientAddr {
		t.Errorf("audit row %s: client ip %q, want %q (through the trusted proxy)", e.RequestID, e.ClientIP, clientAddr)
	}
	if e.At != apitest.Epoch.Unix() {
		t.Errorf("audit row %s: at %d, want the fake clock's %d", e.RequestID, e.At, apitest.Epoch.Unix())
	}
}

func TestAuditRecordsWhoDidWhatFromWhere(t *testing.T) {
	t.Parallel()
	b := setupAudit(t)
	const wrongPassword = "not-the-password-7f3a"
	const secretValue = "s3cr3t-webdav-pa55-91c2"

	anon := b.client(t)
	if r := do(t, anon, "setup-1", "POST", "/api/setup/initialize", map[string]string{"username": apitest.Username, "password": apitest.Password}); r.Status != 204 {
		t.Fatalf("setup: %s", r)
	}
	if r := do(t, anon, "login-bad", "POST", "/api/auth/login", map[string]string{"username": apitest.Username, "password": wrongPassword}); r.Status != 401 {
		t.Fatalf("failed login: %s", r)
	}
	c := b.client(t)
	c.Header.Set("X-Request-Id", "login-ok")
	c.Login(t, apitest.Username, apitest.Password)
	c.Header.Del("X-Request-Id")

	r := do(t, c, "job-create", "POST", "/api/jobs", jobBody(map[string]any{"schedule": nil}))
	if r.Status != 200 {
		t.Fatalf("create job: %s", r)
	}
	jobID := r.JSON(t)["id"].(string)
	if r := do(t, c, "job-update", "PUT", "/api/jobs/"+jobID, jobBody(map[string]any{"schedule": nil, "name": "renamed"})); r.Status != 200 {
		t.Fatalf("update job: %s", r)
	}
	if r := do(t, c, "job-delete", "DELETE", "/api/jobs/"+jobID, nil); r.Status != 204 && r.Status != 200 {
		t.Fatalf("delete job: %s", r)
	}
	if r := do(t, c, "secret-put", "PUT", "/api/secrets/webdav/nas", map[string]any{"username": "bob", "password": secretValue}); r.Status != 204 {
		t.Fatalf("put secret: %s", r)
	}
	r = do(t, c, "token-create", "POST", "/api/agents/enrollment-tokens", map[string]any{"ttl_seconds": 600, "remaining_uses": 1})
	if r.Status != 200 {
		t.Fatalf("enrollment token: %s", r)
	}
	enrollToken := r.JSON(t)["token"].(string)
	r = do(t, anon, "enroll", "POST", "/agent/enroll", map[string]any{"token": enrollToken, "name": "nas"})
	if r.Status != 200 {
		t.Fatalf("enroll: %s", r)
	}
	agentID := r.JSON(t)["agent_id"].(string)
	if r := do(t, anon, "enroll-again", "POST", "/agent/enroll", map[string]any{"token": enrollToken}); r.Status != 401 {
		t.Fatalf("enroll with a used-up token: %s", r)
	}
	if r := do(t, c, "agent-revoke", "POST", "/api/agents/"+agentID+"/revoke", nil); r.Status != 204 {
		t.Fatalf("revoke: %s", r)
	}
	if r := do(t, c, "read", "GET", "/api/jobs", nil); r.Status != 200 {
		t.Fatalf("list jobs: %s", r)
	}
	noCSRF := b.client(t)
	noCSRF.HTTP.Jar = c.HTTP.Jar
	if r := do(t, noCSRF, "no-csrf", "POST", "/api/jobs", jobBody(nil)); r.Status != 401 {
		t.Fatalf("mutation without CSRF: %s", r)
	}
	if r := do(t, c, "logout", "POST", "/api/auth/logout", nil); r.Status != 204 {
		t.Fatalf("logout: %s", r)
	}

	uid := int64(1)
	for id, w := range map[string]want{
		"setup-1":      {"POST /api/setup/initialize", "user", "ok", 204, nil, "admin", "setup", nil},
		"login-bad":    {"POST /api/auth/login", "anonymous", "denied", 401, nil, "admin", "auth", nil},
		"login-ok":     {"POST /api/auth/login", "user", "ok", 200, uid, "admin", "auth", nil},
		"job-create":   {"POST /api/jobs", "user", "ok", 200, uid, "admin", "jobs", jobID},
		"job-update":   {"PUT /api/jobs/{id}", "user", "ok", 200, uid, "admin", "jobs", jobID},
		"job-delete":   {"DELETE /api/jobs/{id}", "user", "ok", 204, uid, "admin", "jobs", jobID},
		"secret-put":   {"PUT /api/secrets/{kind}/{name}", "user", "ok", 204, uid, "admin", "secrets", "webdav/nas"},
		"token-create": {"POST /api/agents/enrollment-tokens", "user", "ok", 200, uid, "admin", "agents", nil},
		"enroll":       {"POST /agent/enroll", "agent", "ok", 200, nil, nil, "agents", agentID},
		"enroll-again": {"POST /agent/enroll", "anonymous", "denied", 401, nil, nil, "agents", nil},
		"agent-revoke": {"POST /api/agents/{id}/revoke", "user", "ok", 204, uid, "admin", "agents", agentID},
		"no-csrf":      {"POST /api/jobs", "anonymous", "denied", 401, nil, nil, "jobs", nil},
		"logout":       {"POST /api/auth/logout", "user", "ok", 204, uid, "admin", "auth", nil},
	} {
		if id == "job-delete" {
			w.status = b.row(t, id).Status // 200 or 204, whichever the route answers
		}
		w.check(t, b.row(t, id))
	}

	rows := b.rows(t)
	for _, e := range rows {
		if e.RequestID == "read" || strings.HasPrefix(e.Action, "GET ") {
			t.Errorf("a read was recorded: %+v", e)
		}
	}
	// No secret value, password or enrollment token anywhere in the log, through the API or not.
	raw, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	var dump strings.Builder
	dump.Write(raw)
	q, err := b.hub.DB.Reader().Query(context.Background(), `SELECT * FROM audit_log`)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := q.Columns()
	for q.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := q.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&dump, vals...)
	}
	q.Close()
	for _, s := range []string{secretValue, wrongPassword, apitest.Password, enrollToken} {
		if strings.Contains(dump.String(), s) {
			t.Errorf("audit log contains %q", s)
		}
	}
}

// Requests refused by a gate in front of the router (here the JSON content-type rule and the
// Host allowlist) are recorded under the route they asked for, never their raw path.
func TestAuditRecordsRequestsRefusedBeforeRouting(t *testing.T) {
	t.Parallel()
	b := setupAudit(t)
	c := b.client(t)
	c.Header.Set("Content-Type", "text/plain")
	if r := do(t, c, "wrong-type", "POST", "/api/auth/login", "username=admin"); r.Status != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain login: %s", r)
	}
	c.Header.Del("Content-Type")
	want{"POST /api/auth/login", "anonymous", "error", 415, nil, nil, "auth", nil}.check(t, b.row(t, "wrong-type"))

	if r := do(t, c, "unknown", "DELETE", "/api/no/such/thing", nil); r.Status != 404 {
		t.Fatalf("unknown route: %s", r)
	}
	want{"DELETE (no route)", "anonymous", "error", 404, nil, nil, nil, nil}.check(t, b.row(t, "unknown"))
}

func TestAuditListPagesAndFilters(t *testing.T) {
	t.Parallel()
	b := setupAudit(t)
	c := b.hub.Login(t) // setup and login at Epoch
	jobs := make([]string, 0, 3)
	for i := range 3 {
		b.hub.Clock.Advance(time.Hour)
		st, job := c.Post(t, "/api/jobs", jobBody(map[string]any{"schedule": nil, "name": fmt.Sprint("job ", i)}))
		if st != 200 {
			t.Fatalf("create: %d %v", st, job)
		}
		jobs = append(jobs, job["id"].(string))
	}
	b.hub.Clock.Advance(time.Hour)
	for _, id := range jobs {
		if st, body := c.Put(t, "/api/jobs/"+id, jobBody(map[string]any{"schedule": nil, "name": "x " + id})); st != 200 {
			t.Fatalf("update: %d %v", st, body)
		}
	}
	bad := b.hub.Client(t)
	// The name tried is kept because it names a user (a name matching no one is not kept).
	if r := bad.Do(t, "POST", "/api/auth/login", map[string]string{"username": apitest.Username, "password": "guess-guess-guess"}); r.Status != 401 {
		t.Fatalf("failed login: %s", r)
	}
	all := b.rows(t) // setup, login, 3 creates, 3 updates, failed login
	if len(all) != 9 {
		t.Fatalf("%d rows, want 9: %+v", len(all), all)
	}

	type page struct {
		Items []struct {
			ID       int64
			At       int64
			Action   string
			Username *string
			UserID   *int64 `json:"user_id"`
		}
		NextCursor *string `json:"next_cursor"`
	}
	list := func(t *testing.T, query url.Values) []int64 {
		t.Helper()
		var ids []int64
		query.Set("limit", "2")
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("pagination does not end")
			}
			resp := c.Do(t, "GET", "/api/audit?"+query.Encode(), nil)
			if resp.Status != 200 {
				t.Fatalf("list %v: %s", query, resp)
			}
			var p page
			resp.Decode(t, &p)
			if len(p.Items) > 2 {
				t.Fatalf("page of %d items with limit 2", len(p.Items))
			}
			for _, it := range p.Items {
				ids = append(ids, it.ID)
			}
			if p.NextCursor == nil {
				return ids
			}
			query.Set("cursor", *p.NextCursor)
		}
	}
	// The rows of all, newest first, that keep says to keep.
	expect := func(keep func(storage.AuditEntry) bool) []int64 {
		var ids []int64
		for i := len(all) - 1; i >= 0; i-- {
			if keep(all[i]) {
				ids = append(ids, all[i].ID)
			}
		}
		return ids
	}
	// GET /api/audit itself is not recorded, so listing does not change what is listed.
	t0 := apitest.Epoch.Unix()
	for name, tc := range map[string]struct {
		q    url.Values
		keep func(storage.AuditEntry) bool
	}{
		"All":         {url.Values{}, func(storage.AuditEntry) bool { return true }},
		"Action":      {url.Values{"action": {"PUT /api/jobs/{id}"}}, func(e storage.AuditEntry) bool { return e.Action == "PUT /api/jobs/{id}" }},
		"UserID":      {url.Values{"user_id": {"1"}}, func(e storage.AuditEntry) bool { return e.UserID != nil && *e.UserID == 1 }},
		"Username":    {url.Values{"username": {apitest.Username}}, func(e storage.AuditEntry) bool { return e.Username != nil && *e.Username == apitest.Username }},
		"TimeRange":   {url.Values{"from": {fmt.Sprint(t0 + 3600)}, "to": {fmt.Sprint(t0 + 3*3600)}}, func(e storage.AuditEntry) bool { return e.At >= t0+3600 && e.At < t0+3*3600 }},
		"ActionSince": {url.Values{"action": {"POST /api/jobs"}, "from": {fmt.Sprint(t0 + 2*3600)}}, func(e storage.AuditEntry) bool { return e.Action == "POST /api/jobs" && e.At >= t0+2*3600 }},
	} {
		t.Run(name, func(t *testing.T) {
			got, exp := list(t, tc.q), expect(tc.keep)
			if len(exp) == 0 {
				t.Fatal("the case selects nothing")
			}
			if fmt.Sprint(got) != fmt.Sprint(exp) {
				t.Errorf("ids %v, want %v", got, exp)
			}
		})
	}
	t.Run("BadQuery", func(t *testing.T) {
		for _, q := range []string{"nope=1", "user_id=x", "from=-1", "cursor=garbage", "limit=many"} {
			if r := c.Do(t, "GET", "/api/audit?"+q, nil); r.Status != 400 {
				t.Errorf("%s: %s", q, r)
			}
		}
	})
	t.Run("NeedsSession", func(t *testing.T) {
		if r := b.hub.Client(t).Do(t, "GET", "/api/audit", nil); r.Status != 401 {
			t.Errorf("without a session: %s", r)
		}
	})
}

// A request is answered while the database writer is busy with something else: its audit row
// waits for the writer, the request does not. (Recorded synchronously, this request would hang
// until the writer is released.)
func TestAuditDoesNotHoldUpTheRequest(t *testing.T) {
	t.Parallel()
	b := setupAudit(t)
	c := b.client(t)
	b.hub.Setup(t)
	c.Login(t, apitest.Username, apitest.Password)
	held, release := make(chan struct{}), make(chan struct{})
	writerDone := make(chan error)
	go func() {
		writerDone <- b.hub.DB.Write(context.Background(), func(storage.Q) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	// Refused by validation before the handler writes anything; the session is read, not written.
	r := do(t, c, "while-held", "POST", "/api/jobs", jobBody(map[string]any{"name": ""}))
	close(release)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusBadRequest {
		t.Fatalf("invalid job: %s", r)
	}
	want{"POST /api/jobs", "user", "error", 400, int64(1), "admin", "jobs", nil}.check(t, b.row(t, "while-held"))
}

// A handler that panics is recorded as the 500 Recover answered; one that aborts its answer
// (http.ErrAbortHandler, which Recover lets through) is recorded as an error too, not as the 200
// an unwritten answer would otherwise look like.
func TestAuditRecordsPanics(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		httpapi.SetTestSessionRoutes(cfg, func(r chi.Router) {
			r.Post("/test/boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
			r.Post("/test/abort", func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
		})
	}))
	b := &auditBundle{hub: hub}
	c := hub.Login(t)
	if r := do(t, c, "boom", "POST", "/api/test/boom", nil); r.Status != 500 {
		t.Fatalf("panicking handler: %s", r)
	}
	req := httptest.NewRequest("POST", "/api/test/abort", nil)
	req.RemoteAddr, req.Host = "127.0.0.1:40000", "127.0.0.1"
	req.AddCookie(c.SessionCookie())
	req.Header.Set(httpapi.CSRFHeader, c.CSRF)
	req.Header.Set("X-Request-Id", "abort")
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("abort: recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		hub.Handler.ServeHTTP(httptest.NewRecorder(), req)
	}()
	for id, wantStatus := range map[string]int{"boom": 500, "abort": 500} {
		e := b.row(t, id)
		if e.Status != wantStatus || e.Outcome != "error" || e.Action != "POST /api/test/"+id || e.ActorKind != "user" {
			t.Errorf("row of %s: %+v", id, e)
		}
	}
}

// TestAuditBoundsTheMethod: an anonymous client sending a huge made-up method gets an audit row
// that names it OTHER, not a row as large as the request line.
func TestAuditBoundsTheMethod(t *testing.T) {
	t.Parallel()
	b := setupAudit(t)
	for _, path := range []string{"/api/jobs", "/api/no-such-route"} {
		req, _ := http.NewRequest(strings.Repeat("X", 512<<10), b.hub.URL+path, nil)
		req.Header.Set("X-Request-Id", "huge-method"+strings.ReplaceAll(path, "/", "-"))
		req.Header.Set("X-Forwarded-For", clientAddr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		e := b.row(t, "huge-method"+strings.ReplaceAll(path, "/", "-"))
		if !strings.HasPrefix(e.Action, "OTHER ") || len(e.Action) > 256 {
			t.Fatalf("audit action of %d bytes: %.80q", len(e.Action), e.Action)
		}
	}
}

// TestAuditKeepsNoNameThatMatchesNoUser: a failed login records the name tried only when it names
// a user. A password typed into the username field is not written anywhere: not in the audit log,
// not in the login throttle's keys. Names with bidi or control characters are never recorded.
func TestAuditKeepsNoNameThatMatchesNoUser(t *testing.T) {
	t.Parallel()
	b := setupAudit(t)
	const typedPassword = "Tr0ub4dor-password-in-the-wrong-field"
	anon := b.client(t)
	if r := do(t, anon, "setup-1", "POST", "/api/setup/initialize", map[string]string{"username": apitest.Username, "password": apitest.Password}); r.Status != 204 {
		t.Fatalf("setup: %s", r)
	}
	for id, name := range map[string]string{"typo": typedPassword, "bidi": "adm\u202Ein", "known": apitest.Username} {
		if r := do(t, anon, id, "POST", "/api/auth/login", map[string]string{"username": name, "password": "wrong-password-1"}); r.Status != 401 {
			t.Fatalf("login %s: %s", id, r)
		}
	}
	if e := b.row(t, "typo"); e.Username != nil {
		t.Fatalf("a name matching no user was recorded: %q", *e.Username)
	}
	if e := b.row(t, "bidi"); e.Username != nil {
		t.Fatalf("a name with a bidi character was recorded: %q", *e.Username)
	}
	if e := b.row(t, "known"); e.Username == nil || *e.Username != apitest.Username {
		t.Fatalf("the name of an existing user tried: %v", deref(e.Username))
	}
	var n int
	if err := b.hub.DB.Reader().QueryRow(context.Background(), "SELECT COUNT(*) FROM login_throttle WHERE ip LIKE ?", "%"+typedPassword+"%").Scan(&n); err != nil || n != 0 {
		t.Fatalf("throttle rows holding the typed password: %d %v", n, err)
	}
	// No user can be named with a bidi character, like any other control character.
	admin := b.client(t)
	admin.Login(t, apitest.Username, apitest.Password)
	if r := do(t, admin, "create-bidi", "POST", "/api/users", map[string]any{"username": "ev\u202Eil", "password": apitest.Password, "role": "viewer"}); r.Status != 400 {
		t.Fatalf("a user named with a bidi character: %s", r)
	}
}
