package httpapi_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/httpapi/middleware"
)

// sendTo sends one request to the Hub with a chosen Host header and headers; body "" sends none.
func sendTo(t *testing.T, hub *apitest.Hub, method, path, host string, hdr map[string]string, body string) (int, map[string]any, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, hub.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, resp.Header
}

const credsJSON = `{"username":"admin","password":"correct horse battery staple"}`

func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) { cfg.UI = fstestUI() }))
	for _, tc := range []struct {
		name, method, path, host string
		status                   int
	}{
		{"UIIndex", "GET", "/", "", 200},
		{"UIDeepLink", "GET", "/jobs/1", "", 200},
		{"APIHealth", "GET", "/api/health", "", 200},
		{"APIUnauthorized", "GET", "/api/secrets/webdav", "", 401},
		{"APINotFound", "GET", "/api/nope", "", 404},
		{"HostRefused", "GET", "/", "evil.example", 421},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, h := sendTo(t, hub, tc.method, tc.path, tc.host, nil, "")
			if st != tc.status {
				t.Fatalf("status %d, want %d", st, tc.status)
			}
			want := map[string]string{
				"Content-Security-Policy": middleware.ContentSecurityPolicy,
				"X-Frame-Options":         "DENY",
				"Referrer-Policy":         "same-origin",
				"X-Content-Type-Options":  "nosniff",
			}
			for k, v := range want {
				if got := h.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
				t.Errorf("CSP does not forbid framing: %q", h.Get("Content-Security-Policy"))
			}
		})
	}
}

func TestHostAllowlist(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.UI = fstestUI()
		cfg.PublicBaseURL = "https://Backup.Example.com:8443/bastion"
		cfg.AllowedHosts = []string{"hub.lan"}
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}))
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(hub.URL, "http://"))
	for _, tc := range []struct {
		name, path, host string
		fwdHost          string
		ok               bool
	}{
		{"Loopback", "/api/session", "127.0.0.1:" + port, "", true},
		{"LoopbackOther", "/api/session", "127.1.2.3", "", true},
		{"IPv6Loopback", "/api/session", "[::1]:" + port, "", true},
		{"Localhost", "/api/session", "LOCALHOST:" + port, "", true},
		{"LANAddress", "/api/session", "192.168.1.20:" + port, "", true},
		{"PublicBaseURLHost", "/api/session", "backup.example.com", "", true},
		{"AllowedHost", "/api/session", "hub.lan:" + port, "", true},
		{"AllowedHostTrailingDot", "/api/session", "hub.lan.", "", true},
		{"Rebound", "/api/session", "evil.example:" + port, "", false},
		{"ReboundUI", "/", "evil.example", "", false},
		{"ReboundSetup", "/api/setup/initialize", "evil.example", "", false},
		{"SubdomainOfAllowed", "/api/session", "x.hub.lan", "", false},
		{"ForwardedHostFromTrustedProxy", "/api/session", "127.0.0.1", "evil.example", false},
		{"ForwardedHostAllowed", "/api/session", "127.0.0.1", "backup.example.com", true},
		{"HealthStaysOpen", "/api/health", "bastion:" + port, "", true},
		{"SetupStatusStaysOpen", "/api/setup/status", "bastion", "", true},
		{"PublicMetadataStaysOpen", "/api/control-plane/public-metadata", "bastion", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.fwdHost != "" {
				hdr["X-Forwarded-Host"] = tc.fwdHost
			}
			method, body := "GET", ""
			if tc.path == "/api/setup/initialize" {
				method, body, hdr["Content-Type"] = "POST", credsJSON, "application/json"
			}
			st, m, _ := sendTo(t, hub, method, tc.path, tc.host, hdr, body)
			if tc.ok && st == http.StatusMisdirectedRequest {
				t.Fatalf("refused: %d %v", st, m)
			}
			if !tc.ok {
				if st != http.StatusMisdirectedRequest || m["error"] != "host_not_allowed" {
					t.Fatalf("got %d %v, want 421 host_not_allowed", st, m)
				}
				if msg, _ := m["message"].(string); !strings.Contains(msg, "--allowed-host") {
					t.Fatalf("the message does not say which flag to set: %q", msg)
				}
			}
		})
	}
	if n := countRows(t, hub.DB, "users"); n != 0 {
		t.Fatalf("a rebound setup created %d users", n)
	}
}

// TestSetupCannotBeClaimedCrossSite: a page on another site cannot create the administrator of a
// fresh Hub, whatever it sends; the Hub's own page (and a script) can.
func TestSetupCannotBeClaimedCrossSite(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.PublicBaseURL = "https://backup.example.com"
	}))
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
		code   string
	}{
		{"NoContentType", map[string]string{}, 415, "unsupported_media_type"},
		{"TextPlain", map[string]string{"Content-Type": "text/plain"}, 415, "unsupported_media_type"},
		{"Form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"CrossSite", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403, "cross_site_refused"},
		{"SameSite", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, 403, "cross_site_refused"},
		{"ForeignOrigin", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, 403, "cross_site_refused"},
		{"NullOrigin", map[string]string{"Content-Type": "application/json", "Origin": "null"}, 403, "cross_site_refused"},
		{"OtherPort", map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}, 403, "cross_site_refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, m, _ := sendTo(t, hub, "POST", "/api/setup/initialize", "", tc.hdr, credsJSON)
			if st != tc.status || m["error"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", st, m, tc.status, tc.code)
			}
		})
	}
	if n := countRows(t, hub.DB, "users"); n != 0 {
		t.Fatalf("refused setups created %d users", n)
	}
	// Login is guarded the same way (before any throttling or hashing).
	st, m, _ := sendTo(t, hub, "POST", "/api/auth/login", "", map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, credsJSON)
	if st != 403 || m["error"] != "cross_site_refused" {
		t.Fatalf("cross-origin login: %d %v", st, m)
	}
	// The Hub's own page: same-origin fetch with its Origin (as the browser reached it), or the
	// public base URL's origin through a proxy.
	own := map[string]string{"Content-Type": "application/json; charset=utf-8", "Origin": hub.URL, "Sec-Fetch-Site": "same-origin"}
	if st, m, _ := sendTo(t, hub, "POST", "/api/setup/initialize", "", own, credsJSON); st != 204 {
		t.Fatalf("same-origin setup: %d %v", st, m)
	}
	pub := map[string]string{"Content-Type": "application/json", "Origin": "https://backup.example.com"}
	if st, m, _ := sendTo(t, hub, "POST", "/api/auth/login", "", pub, credsJSON); st != 200 {
		t.Fatalf("login from the public origin: %d %v", st, m)
	}
	// A script sends neither header.
	if st, m, _ := sendTo(t, hub, "POST", "/api/auth/login", "", map[string]string{"Content-Type": "application/json"}, credsJSON); st != 200 {
		t.Fatalf("scripted login: %d %v", st, m)
	}
}

func TestJSONBodiesNeedJSONContentType(t *testing.T) {
	t.Parallel()
	hub := startWithProbe(t)
	c := hub.Login(t)
	hdr := func(ct string) map[string]string {
		h := map[string]string{httpapi.CSRFHeader: c.CSRF}
		if ct != "" {
			h["Content-Type"] = ct
		}
		return h
	}
	cookie := c.SessionCookie()
	for _, tc := range []struct {
		name, ct, body string
		status         int
	}{
		{"BodylessActionWithoutType", "", "", 200},
		{"BodylessActionWithOtherType", "text/plain", "", 200},
		{"JSON", "application/json", `{}`, 200},
		{"JSONWithCharset", "Application/JSON ; charset=utf-8", `{}`, 200},
		{"BodyWithoutType", "", `{}`, 415},
		{"TextPlain", "text/plain", `{}`, 415},
		{"Multipart", "multipart/form-data; boundary=x", `{}`, 415},
		{"JSONLookalike", "application/jsonp", `{}`, 415},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader
			if tc.body != "" {
				rd = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest("POST", hub.URL+"/api/test/probe", rd)
			for k, v := range hdr(tc.ct) {
				req.Header.Set(k, v)
			}
			req.AddCookie(cookie)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || (tc.status == 415 && !strings.Contains(string(b), `"unsupported_media_type"`)) {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tc.status)
			}
		})
	}
}

// TestSlowBodyIsCutOff: a client that sends its headers and then trickles its body is answered
// 408 when the body read deadline passes, and the handler never acts on the partial body.
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.BodyReadTimeout = 200 * time.Millisecond
	}))
	conn, err := net.Dial("tcp", strings.TrimPrefix(hub.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Only a guard against waiting forever on a server that never times the body out; the pass
	// condition is the answer, which comes after the 200 ms body deadline.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	head := "POST /api/setup/initialize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + itoa(len(credsJSON)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head+credsJSON[:10]); err != nil {
		t.Fatal(err)
	}
	// Trickle: one more byte, then nothing; the server must answer on its own.
	if _, err := io.WriteString(conn, credsJSON[10:11]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), `"request_timeout"`) {
		t.Fatalf("stalled body: %d %s", resp.StatusCode, b)
	}
	if n := countRows(t, hub.DB, "users"); n != 0 {
		t.Fatalf("the handler acted on a partial body: %d users", n)
	}
	// A normal request on a new connection still works.
	if st, m := hub.Client(t).Post(t, "/api/setup/initialize", map[string]string{"username": apitest.Username, "password": apitest.Password}); st != 204 {
		t.Fatalf("setup after the stalled one: %d %v", st, m)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
