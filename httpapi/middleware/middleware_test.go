package middleware_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/respond"
)

func setup(t *testing.T) (*httptest.Server, *apitest.Logs) {
	t.Helper()
	logs := &apitest.Logs{}
	log := zerolog.New(logs)
	r := chi.NewRouter()
	r.Use(middleware.RequestID(log), middleware.ClientIP(nil, false), middleware.AccessLog, middleware.Recover, middleware.BodyLimit)
	r.Get("/api/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		respond.JSON(w, 200, map[string]string{"id": chi.URLParam(r, "id")})
	})
	r.Get("/api/missing", func(w http.ResponseWriter, r *http.Request) {
		respond.Error(w, r, respond.NotFound("job_not_found", "job not found"))
	})
	r.Get("/api/boom", func(w http.ResponseWriter, r *http.Request) { panic("kaboom") })
	r.Post("/api/echo", func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if err := respond.DecodeJSON(r, &v); err != nil {
			respond.Error(w, r, err)
			return
		}
		respond.JSON(w, 200, v)
	})
	r.Post("/agent/upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		respond.JSON(w, 200, map[string]int64{"n": n})
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, logs
}

func do(t *testing.T, method, url string, body io.Reader, hdr map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp, m
}

func TestRequestIDKeptGeneratedOrReplaced(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	for _, tc := range []struct {
		name, sent string
		keep       bool
	}{
		{"None", "", false},
		{"Safe", "client-abc.123:x_y", true},
		{"TooLong", strings.Repeat("a", 65), false},
		{"Unsafe", "abc def", false},
		{"Injection", "abc\",\"level\":\"error", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.sent != "" {
				hdr["X-Request-Id"] = tc.sent
			}
			resp, _ := do(t, "GET", srv.URL+"/api/items/1", nil, hdr)
			got := resp.Header.Get("X-Request-Id")
			if tc.keep && got != tc.sent {
				t.Fatalf("X-Request-Id = %q, want the client's %q", got, tc.sent)
			}
			if !tc.keep && (got == "" || got == tc.sent) {
				t.Fatalf("X-Request-Id = %q, want a generated one", got)
			}
		})
	}
}

func TestErrorEnvelopeAndLogShareRequestID(t *testing.T) {
	t.Parallel()
	srv, logs := setup(t)
	resp, body := do(t, "GET", srv.URL+"/api/missing", nil, map[string]string{"X-Request-Id": "req-404"})
	if resp.StatusCode != 404 || body["error"] != "job_not_found" || body["message"] != "job not found" || body["request_id"] != "req-404" {
		t.Fatalf("status %d body %v", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", srv.URL+"/api/boom?token=s3cr3t", nil, map[string]string{"X-Request-Id": "req-500"})
	if resp.StatusCode != 500 || body["error"] != "internal_error" || body["request_id"] != "req-500" {
		t.Fatalf("panic: status %d body %v", resp.StatusCode, body)
	}
	var access, panics int
	for _, l := range logs.Lines(t) {
		if l["request_id"] == "req-500" && l["message"] == "handler panicked" {
			panics++
		}
		if l["message"] != "http request" {
			continue
		}
		access++
		if l["request_id"] == "req-500" {
			if l["route"] != "/api/boom" || l["status"] != float64(500) || l["method"] != "GET" {
				t.Errorf("access line for the panic: %v", l)
			}
			for _, k := range []string{"bytes", "duration", "path"} {
				if _, ok := l[k]; !ok {
					t.Errorf("access line lacks %s: %v", k, l)
				}
			}
		}
	}
	if access != 2 || panics != 1 {
		t.Fatalf("%d access lines and %d panic lines, want 2 and 1", access, panics)
	}
	if strings.Contains(logs.String(), "s3cr3t") {
		t.Fatal("a query string reached the log")
	}
}

func TestAccessLogUsesRoutePattern(t *testing.T) {
	t.Parallel()
	srv, logs := setup(t)
	do(t, "GET", srv.URL+"/api/items/42", nil, map[string]string{"X-Request-Id": "req-route"})
	for _, l := range logs.Lines(t) {
		if l["request_id"] == "req-route" && l["route"] == "/api/items/{id}" && l["status"] == float64(200) {
			return
		}
	}
	t.Fatalf("no access line with the route pattern: %v", logs.Lines(t))
}

func TestBodyLimitsAndDecodeErrors(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	big := `{"a":"` + strings.Repeat("x", middleware.APIBodyLimit) + `"}`
	resp, body := do(t, "POST", srv.URL+"/api/echo", strings.NewReader(big), map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 413 || body["error"] != "payload_too_large" {
		t.Fatalf("oversized API body: status %d body %v", resp.StatusCode, body)
	}
	agentBody := strings.Repeat("x", middleware.APIBodyLimit+1)
	resp, body = do(t, "POST", srv.URL+"/agent/upload", strings.NewReader(agentBody), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("agent body over 2 MiB but under 4 MiB: status %d %v", resp.StatusCode, body)
	}
	resp, _ = do(t, "POST", srv.URL+"/agent/upload", strings.NewReader(strings.Repeat("x", middleware.AgentBodyLimit+1)), nil)
	if resp.StatusCode != 413 {
		t.Fatalf("agent body over 4 MiB: status %d", resp.StatusCode)
	}
	for _, tc := range []struct{ body, reason string }{
		{``, "empty"},
		{`{"a":`, "syntax"},
		{`{"a":1} {"b":2}`, "trailing_data"},
		{`[1,2]`, "wrong_type"},
		{`{"password":"hunter2"`, "syntax"},
	} {
		resp, body := do(t, "POST", srv.URL+"/api/echo", strings.NewReader(tc.body), map[string]string{"Content-Type": "application/json"})
		details, _ := body["details"].(map[string]any)
		if resp.StatusCode != 400 || body["error"] != "invalid_json" || details["reason"] != tc.reason {
			t.Errorf("body %q: status %d, %v", tc.body, resp.StatusCode, body)
		}
		if strings.Contains(body["message"].(string), "hunter2") {
			t.Errorf("error message echoes the body: %v", body["message"])
		}
	}
}

func TestParseForwardedFor(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	peer := netip.MustParseAddr("10.0.0.2")
	for _, tc := range []struct {
		name    string
		headers []string
		want    string
	}{
		{"NoHeader", nil, "10.0.0.2"},
		{"OneClient", []string{"203.0.113.7"}, "203.0.113.7"},
		{"SpoofedLeftmostIgnored", []string{"1.1.1.1, 203.0.113.7"}, "203.0.113.7"},
		{"SkipsTrustedHops", []string{"203.0.113.7, 10.0.0.9, 10.1.2.3"}, "203.0.113.7"},
		{"SeveralHeaderLines", []string{"198.51.100.1", "203.0.113.7, 10.0.0.9"}, "203.0.113.7"},
		{"AllTrusted", []string{"10.0.0.5"}, "10.0.0.2"},
		{"WithPorts", []string{"203.0.113.7:4711, [2001:db8::1]:443"}, "2001:db8::1"},
		{"MalformedFallsBackToPeer", []string{"203.0.113.7, not-an-ip"}, "10.0.0.2"},
		{"MalformedOnlyHeader", []string{"not-an-ip"}, "10.0.0.2"},
		{"MalformedSpoofedPrefixIgnored", []string{"not-an-ip, 203.0.113.7"}, "203.0.113.7"},
		{"MalformedSpoofedLineIgnored", []string{"garbage", "203.0.113.7, 10.0.0.9"}, "203.0.113.7"},
		{"MalformedBetweenTrustedHops", []string{"203.0.113.7, bogus, 10.0.0.9"}, "10.0.0.2"},
		{"EmptyEntry", []string{"203.0.113.7,,10.0.0.9"}, "10.0.0.2"},
		{"Zone", []string{"fe80::1%eth0"}, "10.0.0.2"},
		{"MappedV4", []string{"::ffff:203.0.113.7"}, "203.0.113.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := middleware.ParseForwardedFor(tc.headers, peer, trusted)
			if got.String() != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestResolveClientHTTPSOnlyFromTrustedPeer(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	mk := func(remote, proto string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-Proto", proto)
		r.Header.Set("X-Forwarded-For", "203.0.113.7")
		return r
	}
	if c := middleware.ResolveClient(mk("127.0.0.1:5000", "HTTPS"), trusted, false); !c.HTTPS || c.IP.String() != "203.0.113.7" {
		t.Errorf("trusted proxy: %+v", c)
	}
	if c := middleware.ResolveClient(mk("192.0.2.1:5000", "https"), trusted, false); c.HTTPS || c.IP.String() != "192.0.2.1" {
		t.Errorf("untrusted peer claiming https: %+v", c)
	}
	if c := middleware.ResolveClient(mk("127.0.0.1:5000", "https"), trusted, true); c.HTTPS {
		t.Errorf("insecure mode must never count a request as HTTPS: %+v", c)
	}
}

func TestGeneratedRequestIDsAreUniqueAndSafe(t *testing.T) {
	t.Parallel()
	h := middleware.RequestID(zerolog.Nop())(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	seen := map[string]bool{}
	for range 20000 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		id := w.Header().Get("X-Request-Id")
		if len(id) != 16 || strings.Trim(id, "0123456789abcdefghjkmnpqrstvwxyz") != "" {
			t.Fatalf("generated ID %q is not 16 lowercase base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("ID %q generated twice", id)
		}
		seen[id] = true
	}
}

func TestAccessLogLineHasClientAndRequestID(t *testing.T) {
	t.Parallel()
	srv, logs := setup(t)
	do(t, "GET", srv.URL+"/api/items/7", nil, map[string]string{"X-Request-Id": "req-ip"})
	for _, l := range logs.Lines(t) {
		if l["message"] == "http request" && l["request_id"] == "req-ip" {
			if l["client_ip"] != "127.0.0.1" || l["bytes"] == float64(0) {
				t.Fatalf("access line %v", l)
			}
			return
		}
	}
	t.Fatalf("no access line for req-ip: %v", logs.Lines(t))
}

func TestAccessLogAtWarnWritesNothingAndStillServes(t *testing.T) {
	t.Parallel()
	logs := &apitest.Logs{}
	r := chi.NewRouter()
	r.Use(middleware.RequestID(zerolog.New(logs).Level(zerolog.WarnLevel)), middleware.ClientIP(nil, false), middleware.AccessLog)
	r.Get("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine") })
	r.Get("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	srv := httptest.NewServer(r)
	defer srv.Close()
	if resp, _ := do(t, "GET", srv.URL+"/ok", nil, nil); resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("status %d, request ID %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	if logs.String() != "" {
		t.Fatalf("access line at warn level: %s", logs.String())
	}
	do(t, "GET", srv.URL+"/fail", nil, map[string]string{"X-Request-Id": "req-503"})
	if lines := logs.Find(t, "http request"); len(lines) != 1 || lines[0]["request_id"] != "req-503" || lines[0]["level"] != "error" {
		t.Fatalf("a 5xx is logged at error level whatever the level: %v", lines)
	}
}

// fileWriter is a ResponseWriter like net/http's for HTTP/1: it can flush, hijack and ReadFrom,
// and notes what ReadFrom was given.
type fileWriter struct {
	httptest.ResponseRecorder
	readFrom []io.Reader
}

func (w *fileWriter) ReadFrom(r io.Reader) (int64, error) {
	w.readFrom = append(w.readFrom, r)
	return io.Copy(&w.ResponseRecorder, r)
}
func (w *fileWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, http.ErrNotSupported
}

// The whole chain hands a file body down to the server's ReadFrom, which is what lets net/http
// send it with sendfile: no wrapper may hide io.ReaderFrom.
func TestChainKeepsReaderFromForSendfile(t *testing.T) {
	t.Parallel()
	f, err := os.CreateTemp(t.TempDir(), "asset")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(strings.Repeat("x", 10000)); err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Use(middleware.RequestID(zerolog.Nop()), middleware.ClientIP(nil, false), middleware.AccessLog,
		middleware.Recover, middleware.BodyLimit, middleware.RequireHTTPS(false))
	r.Get("/asset", func(w http.ResponseWriter, r *http.Request) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			t.Error(err)
		}
		if _, ok := w.(http.Flusher); !ok {
			t.Error("the chain hides http.Flusher")
		}
		io.Copy(w, &io.LimitedReader{R: f, N: 10000})
	})
	w := &fileWriter{ResponseRecorder: *httptest.NewRecorder()}
	req := httptest.NewRequest("GET", "/asset", nil)
	req.RemoteAddr = "127.0.0.1:5000"
	r.ServeHTTP(w, req)
	if len(w.readFrom) != 1 || w.Body.Len() != 10000 {
		t.Fatalf("%d ReadFrom calls, %d bytes: the chain hid io.ReaderFrom", len(w.readFrom), w.Body.Len())
	}
	lr, ok := w.readFrom[0].(*io.LimitedReader)
	if !ok || lr.R != io.Reader(f) {
		t.Fatalf("ReadFrom got %T, want the *os.File (in its LimitedReader)", w.readFrom[0])
	}
}

// TestAccessLogBoundsMethodAndPath: anyone can send a method token or a path up to the header
// limit; the access line names a non-standard method OTHER and cuts the path.
func TestAccessLogBoundsMethodAndPath(t *testing.T) {
	t.Parallel()
	srv, logs := setup(t)
	do(t, strings.Repeat("M", 200<<10), srv.URL+"/api/"+strings.Repeat("p", 200<<10), nil, map[string]string{"X-Request-Id": "req-huge"})
	for _, l := range logs.Lines(t) {
		if l["request_id"] != "req-huge" || l["message"] != "http request" {
			continue
		}
		if l["method"] != "OTHER" || len(l["path"].(string)) > 4096 {
			t.Fatalf("access line keeps method of %d bytes and path of %d bytes", len(l["method"].(string)), len(l["path"].(string)))
		}
		return
	}
	t.Fatal("no access line for the request")
}
