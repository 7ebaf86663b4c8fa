package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

type bundle struct {
	srv *httptest.Server
	db  *storage.DB
}

func setup(t *testing.T) *bundle {
	t.Helper()
	db := storagetest.Open(t)
	h := httpapi.New(httpapi.Config{
		Logger:      zerolog.New(zerolog.NewTestWriter(t)),
		DB:          db,
		UI:          fstestUI(),
		Version:     "1.2.3",
		HubTimezone: "Europe/Berlin",
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &bundle{srv: srv, db: db}
}

func getJSON(t *testing.T, url string) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: body is not JSON: %q", url, b)
	}
	return resp.StatusCode, m, resp.Header
}

func TestSystemEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if code, m, _ := getJSON(t, b.srv.URL+"/api/health"); code != 200 || m["ok"] != true {
		t.Errorf("health: %d %v", code, m)
	}
	if code, m, _ := getJSON(t, b.srv.URL+"/api/ready"); code != 200 || m["ok"] != true {
		t.Errorf("ready: %d %v", code, m)
	}
	code, m, _ := getJSON(t, b.srv.URL+"/api/system")
	if code != 200 || m["version"] != "1.2.3" || m["hub_timezone"] != "Europe/Berlin" || m["insecure_http"] != false {
		t.Errorf("system: %d %v", code, m)
	}
	if code, m, _ := getJSON(t, b.srv.URL+"/api/setup/status"); code != 200 || m["needs_setup"] != true {
		t.Errorf("setup status on an empty database: %d %v", code, m)
	}
	// Without a session: the product, the version and the setup state, nothing else.
	code, m, _ = getJSON(t, b.srv.URL+"/api/control-plane/public-metadata")
	if code != 200 || m["product_name"] != "Bastion" || m["version"] != "1.2.3" || m["needs_setup"] != true || len(m) != 3 {
		t.Errorf("public metadata: %d %v", code, m)
	}
}

func TestReadyFailsWhenDatabaseIsUnusable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.db.Close()
	code, m, hdr := getJSON(t, b.srv.URL+"/api/ready")
	if code != 503 || m["error"] != "not_ready" || m["request_id"] != hdr.Get("X-Request-Id") {
		t.Fatalf("ready with a closed database: %d %v", code, m)
	}
}

func TestUnknownPaths(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, p := range []string{"/api/nope", "/api/jobs/x/whatever", "/agent/nope"} {
		code, m, hdr := getJSON(t, b.srv.URL+p)
		if code != 404 || m["error"] != "not_found" || m["request_id"] == "" || m["request_id"] != hdr.Get("X-Request-Id") {
			t.Errorf("%s: %d %v", p, code, m)
		}
	}
	resp, err := http.Get(b.srv.URL + "/jobs/123")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "id=app") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("deep link: %d %q", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Fatal("UI answers lack X-Request-Id")
	}
}
