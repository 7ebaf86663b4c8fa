package httpapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// startWithProbe starts a Hub with a probe resource among the session routes: GET and POST
// /api/test/probe answer the authenticated user id.
func startWithProbe(t *testing.T, opts ...apitest.Option) *apitest.Hub {
	t.Helper()
	probe := func(w http.ResponseWriter, r *http.Request) {
		respond.JSON(w, http.StatusOK, map[string]int64{"user_id": httpapi.UserID(r)})
	}
	opts = append(opts, apitest.WithConfig(func(cfg *httpapi.Config) {
		httpapi.SetTestSessionRoutes(cfg, func(r chi.Router) {
			r.Get("/test/probe", probe)
			r.Post("/test/probe", probe)
		})
	}))
	return apitest.Start(t, opts...)
}

func details(m map[string]any) map[string]any {
	d, _ := m["details"].(map[string]any)
	return d
}

func param(m map[string]any, k string) any {
	p, _ := details(m)["params"].(map[string]any)
	return p[k]
}

func countRows(t *testing.T, db *storage.DB, table string) int {
	t.Helper()
	var n int
	if err := db.Reader().QueryRow(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSetupLoginSessionLogout(t *testing.T) {
	t.Parallel()
	hub := startWithProbe(t)
	c := hub.Client(t)

	if st, m := c.Get(t, "/api/setup/status"); st != 200 || m["needs_setup"] != true {
		t.Fatalf("setup status before setup: %d %v", st, m)
	}
	if st, m := c.Get(t, "/api/test/probe"); st != 401 || m["error"] != "unauthorized" {
		t.Fatalf("protected route without session: %d %v", st, m)
	}
	resp := c.Do(t, "POST", "/api/setup/initialize", map[string]string{"username": "  admin ", "password": apitest.Password})
	if resp.Status != 204 || len(resp.Cookies) != 0 {
		t.Fatalf("setup: %v, cookies %v (setup must not create a session)", resp, resp.Cookies)
	}
	if st, m := c.Get(t, "/api/setup/status"); st != 200 || m["needs_setup"] != false {
		t.Fatalf("setup status after setup: %d %v", st, m)
	}
	if st, m := c.Get(t, "/api/session"); st != 200 || m["authenticated"] != false || m["csrf_token"] != nil {
		t.Fatalf("session before login: %d %v", st, m)
	}

	// The username was trimmed at setup; login trims too.
	resp = c.Do(t, "POST", "/api/auth/login", map[string]string{"username": "admin", "password": apitest.Password})
	if resp.Status != 200 {
		t.Fatalf("login: %v", resp)
	}
	csrf, _ := resp.JSON(t)["csrf_token"].(string)
	if raw, err := base64.RawURLEncoding.DecodeString(csrf); err != nil || len(raw) != 32 {
		t.Fatalf("csrf_token %q is not 32 bytes of unpadded base64url", csrf)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("login answer may be cached: %q", resp.Header.Get("Cache-Control"))
	}
	if len(resp.Cookies) != 1 {
		t.Fatalf("login set %d cookies", len(resp.Cookies))
	}
	ck := resp.Cookies[0]
	raw, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if ck.Name != "bastion_session" || err != nil || len(raw) != 32 {
		t.Fatalf("session cookie %s=%q is not 32 bytes of base64url", ck.Name, ck.Value)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.MaxAge != 0 || !ck.Expires.IsZero() || ck.Secure {
		t.Fatalf("cookie attributes: %+v", ck)
	}

	// The database holds only a hash of the cookie: a copy of it cannot be replayed.
	var storedID string
	var expires, created int64
	if err := hub.DB.Reader().QueryRow(context.Background(), "SELECT id, created_at, expires_at FROM sessions").Scan(&storedID, &created, &expires); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if storedID != hex.EncodeToString(sum[:]) || strings.Contains(storedID, ck.Value) {
		t.Fatalf("sessions.id %q is not the SHA-256 of the cookie token", storedID)
	}
	if created != apitest.Epoch.Unix() || expires != apitest.Epoch.Add(7*24*time.Hour).Unix() {
		t.Fatalf("session created %d expires %d, want %d + 7 days", created, expires, apitest.Epoch.Unix())
	}
	replay := hub.Client(t)
	replay.Header.Set("Cookie", "bastion_session="+storedID)
	if st, m := replay.Get(t, "/api/test/probe"); st != 401 || m["error"] != "unauthorized" {
		t.Fatalf("database session id used as a cookie: %d %v", st, m)
	}

	if st, m := c.Get(t, "/api/session"); st != 200 || m["authenticated"] != true || m["csrf_token"] != csrf {
		t.Fatalf("session after login: %d %v", st, m)
	}
	if st, m := c.Get(t, "/api/test/probe"); st != 200 || m["user_id"] != float64(1) {
		t.Fatalf("protected GET with session, no CSRF needed: %d %v", st, m)
	}
	if st, m := c.Post(t, "/api/test/probe", nil); st != 401 || m["error"] != "invalid_csrf" {
		t.Fatalf("protected POST without CSRF: %d %v", st, m)
	}
	c.CSRF = csrf
	if st, m := c.Post(t, "/api/test/probe", nil); st != 200 || m["user_id"] != float64(1) {
		t.Fatalf("protected POST with CSRF: %d %v", st, m)
	}
	var withUser int
	for _, l := range hub.Logs.Find(t, "http request") {
		if l["route"] == "/api/test/probe" && l["user_id"] == float64(1) {
			withUser++
		}
	}
	if withUser == 0 {
		t.Error("access log lines of authenticated requests lack user_id")
	}

	// Logout with a live session needs CSRF.
	c.CSRF = ""
	if st, m := c.Post(t, "/api/auth/logout", nil); st != 401 || m["error"] != "invalid_csrf" {
		t.Fatalf("logout without CSRF: %d %v", st, m)
	}
	c.CSRF = csrf
	resp = c.Do(t, "POST", "/api/auth/logout", nil)
	if resp.Status != 204 || len(resp.Cookies) != 1 || resp.Cookies[0].Value != "" || resp.Cookies[0].MaxAge >= 0 {
		t.Fatalf("logout: %v cookies %+v", resp, resp.Cookies)
	}
	if n := countRows(t, hub.DB, "sessions"); n != 0 {
		t.Fatalf("%d sessions left after logout", n)
	}
	if st, m := c.Get(t, "/api/session"); st != 200 || m["authenticated"] != false {
		t.Fatalf("session after logout: %d %v", st, m)
	}
	// The old cookie value, replayed by hand, is dead too.
	replay = hub.Client(t)
	replay.Header.Set("Cookie", "bastion_session="+ck.Value)
	if st, m := replay.Get(t, "/api/test/probe"); st != 401 || m["error"] != "unauthorized" {
		t.Fatalf("cookie after logout: %d %v", st, m)
	}
	// Logout without a session is still 204.
	if st, _ := hub.Client(t).Post(t, "/api/auth/logout", nil); st != 204 {
		t.Fatalf("logout without session: %d", st)
	}
}

func TestSetupRejectsBadInputAndChangesNothing(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	c := hub.Client(t)
	for _, tc := range []struct {
		name, body, code, reason, field string
		status                          int
	}{
		{"EmptyBody", ``, "invalid_json", "empty", "", 400},
		{"Malformed", `{"username":"admin",`, "invalid_json", "syntax", "", 400},
		{"WrongType", `{"username":"admin","password":123456789012}`, "invalid_json", "wrong_type", "password", 400},
		{"UnknownField", `{"username":"admin","password":"correct horse battery","admin":true}`, "invalid_json", "unknown_field", "admin", 400},
		{"MissingUsername", `{"password":"correct horse battery"}`, "invalid_username", "required", "username", 400},
		{"BlankUsername", `{"username":" \t ","password":"correct horse battery"}`, "invalid_username", "required", "username", 400},
		{"ControlInUsername", `{"username":"ad\u0000min","password":"correct horse battery"}`, "invalid_username", "invalid_format", "username", 400},
		{"LongUsername", `{"username":"` + strings.Repeat("a", 129) + `","password":"correct horse battery"}`, "invalid_username", "too_long", "username", 400},
		{"ShortPassword", `{"username":"admin","password":"elevenbytes"}`, "invalid_password", "min_length", "password", 400},
		{"MissingPassword", `{"username":"admin"}`, "invalid_password", "min_length", "password", 400},
		{"Oversized", `{"username":"admin","password":"` + strings.Repeat("x", 3<<20) + `"}`, "payload_too_large", "", "", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := c.Do(t, "POST", "/api/setup/initialize", tc.body)
			m := resp.JSON(t)
			d := details(m)
			if resp.Status != tc.status || m["error"] != tc.code || (tc.reason != "" && d["reason"] != tc.reason) || (tc.field != "" && d["field"] != tc.field) {
				t.Fatalf("got %v", resp)
			}
			if tc.code == "invalid_password" && param(m, "min_length") != float64(12) {
				t.Fatalf("min_length param missing: %v", m)
			}
		})
	}
	if n := countRows(t, hub.DB, "users"); n != 0 {
		t.Fatalf("bad setups created %d users", n)
	}
	hub.Setup(t)
	resp := c.Do(t, "POST", "/api/setup/initialize", map[string]string{"username": "mallory", "password": "another long password"})
	if resp.Status != 409 || resp.ErrorCode() != "already_initialized" {
		t.Fatalf("second setup: %v", resp)
	}
	if n := countRows(t, hub.DB, "users"); n != 1 {
		t.Fatalf("%d users after a refused second setup", n)
	}
}

func TestConcurrentSetupHasExactlyOneWinner(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	const n = 8
	statuses := make([]*apitest.Response, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = hub.Client(t).Do(t, "POST", "/api/setup/initialize",
				map[string]string{"username": "admin" + string(rune('a'+i)), "password": apitest.Password})
		}()
	}
	close(start)
	wg.Wait()
	var won, lost int
	for _, r := range statuses {
		switch {
		case r.Status == 204:
			won++
		case r.Status == 409 && r.ErrorCode() == "already_initialized":
			lost++
		default:
			t.Errorf("unexpected answer %v", r)
		}
	}
	if won != 1 || lost != n-1 {
		t.Fatalf("%d winners and %d losers, want 1 and %d", won, lost, n-1)
	}
	if c := countRows(t, hub.DB, "users"); c != 1 {
		t.Fatalf("%d user rows, want 1", c)
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	hub.Setup(t)
	c := hub.Client(t)
	unknown := c.Do(t, "POST", "/api/auth/login", map[string]string{"username": "nobody", "password": apitest.Password})
	wrong := c.Do(t, "POST", "/api/auth/login", map[string]string{"username": apitest.Username, "password": "not the password"})
	for _, r := range []*apitest.Response{unknown, wrong} {
		if r.Status != 401 || r.ErrorCode() != "invalid_credentials" || len(r.Cookies) != 0 {
			t.Fatalf("failed login: %v", r)
		}
	}
	um, wm := unknown.JSON(t), wrong.JSON(t)
	if um["message"] != wm["message"] || um["details"] != nil || wm["details"] != nil {
		t.Fatalf("unknown user and wrong password answer differently: %v vs %v", um, wm)
	}
	for _, tc := range []struct{ body, code string }{
		{`{"password":"x"}`, "invalid_username"},
		{`{"username":"admin"}`, "invalid_password"},
		{`{"username":"admin","password":1}`, "invalid_json"},
		{`nope`, "invalid_json"},
	} {
		if r := c.Do(t, "POST", "/api/auth/login", tc.body); r.Status != 400 || r.ErrorCode() != tc.code {
			t.Errorf("login %s: %v", tc.body, r)
		}
	}
	if n := countRows(t, hub.DB, "sessions"); n != 0 {
		t.Fatalf("failed logins created %d sessions", n)
	}
	row, err := hub.DB.Reader().GetLoginThrottle(context.Background(), "127.0.0.1")
	if err != nil || row.Failures != 2 {
		t.Fatalf("throttle after two bad credentials (malformed requests do not count): %+v %v", row, err)
	}
}

func TestSessionExpiresSevenDaysAfterLogin(t *testing.T) {
	t.Parallel()
	hub := startWithProbe(t)
	c := hub.Login(t)
	hub.Clock.Advance(7*24*time.Hour - time.Second)
	if st, m := c.Get(t, "/api/test/probe"); st != 200 {
		t.Fatalf("one second before expiry: %d %v", st, m)
	}
	hub.Clock.Advance(time.Second)
	if st, m := c.Get(t, "/api/test/probe"); st != 401 || m["error"] != "unauthorized" {
		t.Fatalf("at expiry: %d %v", st, m)
	}
	if st, m := c.Get(t, "/api/session"); st != 200 || m["authenticated"] != false {
		t.Fatalf("session at expiry: %d %v", st, m)
	}
}

func TestForgedCookiesAndForeignCSRF(t *testing.T) {
	t.Parallel()
	hub := startWithProbe(t)
	alice := hub.Login(t)
	bob := hub.Login(t) // a second session of the same admin, e.g. another browser
	if alice.CSRF == bob.CSRF {
		t.Fatal("two sessions share a CSRF token")
	}
	for name, cookie := range map[string]string{
		"Random":    base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("k", 32))),
		"Short":     "abc",
		"NotBase64": strings.Repeat("*", 43),
		"Empty":     "",
	} {
		c := hub.Client(t)
		c.Header.Set("Cookie", "bastion_session="+cookie)
		if st, m := c.Get(t, "/api/test/probe"); st != 401 || m["error"] != "unauthorized" {
			t.Errorf("%s cookie: %d %v", name, st, m)
		}
	}
	stolen := alice.CSRF
	alice.CSRF = bob.CSRF
	if st, m := alice.Post(t, "/api/test/probe", nil); st != 401 || m["error"] != "invalid_csrf" {
		t.Fatalf("CSRF token of another session: %d %v", st, m)
	}
	alice.CSRF = stolen + "x"
	if st, m := alice.Post(t, "/api/test/probe", nil); st != 401 || m["error"] != "invalid_csrf" {
		t.Fatalf("altered CSRF token: %d %v", st, m)
	}
	alice.CSRF = stolen
	if st, _ := alice.Post(t, "/api/test/probe", nil); st != 200 {
		t.Fatalf("own CSRF token: %d", st)
	}
}

func TestCookieSecureOnlyBehindTrustedHTTPSProxy(t *testing.T) {
	t.Parallel()
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct {
		name     string
		trusted  []netip.Prefix
		insecure bool
		proto    string
		secure   bool
	}{
		{"TrustedProxyHTTPS", loopback, false, "https", true},
		{"TrustedProxyHTTPSUpperCase", loopback, false, "HTTPS", true},
		{"TrustedProxyHTTP", loopback, false, "http", false},
		{"UntrustedPeerClaimsHTTPS", nil, false, "https", false},
		{"InsecureModeNeverSecure", loopback, true, "https", false},
		{"DirectLoopback", loopback, false, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
				cfg.TrustedProxies, cfg.InsecureHTTP = tc.trusted, tc.insecure
			}))
			hub.Setup(t)
			c := hub.Client(t)
			if tc.proto != "" {
				c.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			resp := c.Do(t, "POST", "/api/auth/login", map[string]string{"username": apitest.Username, "password": apitest.Password})
			if resp.Status != 200 || len(resp.Cookies) != 1 {
				t.Fatalf("login: %v", resp)
			}
			ck := resp.Cookies[0]
			if ck.Secure != tc.secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
				t.Fatalf("cookie %+v, want Secure=%v", ck, tc.secure)
			}
		})
	}
}

func TestHTTPSGate(t *testing.T) {
	t.Parallel()
	type request struct {
		path, remote, proto string
	}
	const remote = "192.0.2.10:40000" // a machine on the network (TEST-NET-1)
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32")}
		cfg.UI = fstestUI()
		cfg.AllowedHosts = []string{"example.com"} // httptest.NewRequest's Host
	}))
	serve := func(req request) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", req.path, nil)
		r.RemoteAddr = req.remote
		if req.proto != "" {
			r.Header.Set("X-Forwarded-Proto", req.proto)
		}
		w := httptest.NewRecorder()
		hub.Handler.ServeHTTP(w, r)
		return w
	}
	for _, p := range []string{"/api/health", "/api/ready", "/api/system", "/api/setup/status", "/api/control-plane/public-metadata"} {
		if w := serve(request{p, remote, ""}); w.Code != 200 {
			t.Errorf("open path %s over plain HTTP from the network: %d %s", p, w.Code, w.Body)
		}
	}
	for _, p := range []string{"/api/session", "/api/auth/login", "/api/nope", "/", "/jobs/1", "/assets/app.js", "/agent/ws", "/api/health/"} {
		w := serve(request{p, remote, ""})
		if w.Code != 400 || !strings.Contains(w.Body.String(), `"insecure_not_allowed"`) {
			t.Errorf("%s over plain HTTP from the network: %d %s", p, w.Code, w.Body)
		}
	}
	for _, tc := range []struct {
		name string
		req  request
		ok   bool
	}{
		{"LoopbackV4", request{"/api/session", "127.0.0.1:5000", ""}, true},
		{"LoopbackV6", request{"/api/session", "[::1]:5000", ""}, true},
		{"TrustedProxyHTTPS", request{"/api/session", "198.51.100.1:5000", "https"}, true},
		{"TrustedProxyHTTP", request{"/api/session", "198.51.100.1:5000", "http"}, false},
		{"UntrustedClaimsHTTPS", request{"/api/session", remote, "https"}, false},
		{"SPAThroughTrustedProxy", request{"/jobs/1", "198.51.100.1:5000", "https"}, true},
	} {
		if w := serve(tc.req); (w.Code == 200) != tc.ok {
			t.Errorf("%s: %d %s", tc.name, w.Code, w.Body)
		}
	}

	insecure := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.InsecureHTTP = true
		cfg.AllowedHosts = []string{"example.com"}
	}))
	r := httptest.NewRequest("GET", "/api/session", nil)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	insecure.Handler.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("--insecure-http from the network: %d %s", w.Code, w.Body)
	}
}
