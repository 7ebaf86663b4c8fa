package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

// recorder is a loopback HTTP server that records every request reaching it, and whether any
// carried an Authorization header: the server an attacker names in base_url.
type recorder struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
	auth     []string
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.String())
		if a := req.Header.Get("Authorization"); a != "" {
			r.auth = append(r.auth, a)
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) assertUntouched(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.requests) != 0 || len(r.auth) != 0 {
		t.Fatalf("the other server was reached: %d requests %q, %d with Authorization", len(r.requests), r.requests, len(r.auth))
	}
}

// crossSiteGet is what a link on another site makes the admin's browser send: the session cookie
// (SameSite=Lax goes with a top-level GET), no CSRF token.
func crossSiteGet(t *testing.T, hub *apitest.Hub, c *apitest.Client, path string) *apitest.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, hub.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(c.SessionCookie())
	req.Header.Set("Referer", "https://evil.example/page")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &apitest.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// TestStoredWebDAVCredentialGoesOnlyToItsOrigin (security issue 11.2): a listing, a job save and
// the secret API never send a stored WebDAV credential to a server it was not saved for.
func TestStoredWebDAVCredentialGoesOnlyToItsOrigin(t *testing.T) {
	t.Parallel()
	testtool.Require(t, "rclone")
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "a.txt"), []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	davURL, user, pass := testtool.StartRcloneWebDAV(t, share)
	davOrigin, _ := secrets.NormalizeOrigin(davURL)
	rogue := startRecorder(t)
	jh := startJobsHub(t)
	hub, c := jh.Hub, jh.c

	// Saved with the server it is for (what the web UI's form sends): bound to that origin.
	if resp := c.Do(t, "PUT", "/api/secrets/webdav/nas", map[string]string{"username": user, "password": pass, "base_url": davURL + "/dav/"}); resp.Status != 204 {
		t.Fatalf("save: %s", resp)
	}
	if _, m := c.Get(t, "/api/secrets/webdav/nas"); m["allowed_origins"] == nil || m["allowed_origins"].([]any)[0] != davOrigin || m["base_url"] != nil {
		t.Fatalf("secret as read back: %v", m)
	}
	list := func(base, secret string) string {
		return "/api/nodes/hub/webdav/list?" + url.Values{"base_url": {base}, "secret_name": {secret}, "path": {"/"}}.Encode()
	}

	t.Run("CrossSiteGetToAnotherServer", func(t *testing.T) {
		resp := crossSiteGet(t, hub, c, list(rogue.URL+"/steal", "nas"))
		if resp.Status != 400 || resp.ErrorCode() != secrets.CodeOriginMismatch {
			t.Fatalf("cross-site GET: %s", resp)
		}
		if strings.Contains(string(resp.Body), pass) {
			t.Fatal("the answer carries the password")
		}
		// Same host, other scheme or port: another origin.
		u, _ := url.Parse(davURL)
		for _, other := range []string{"https://" + u.Host + "/", "http://localhost:" + u.Port() + "/", "http://" + u.Hostname() + ":1/"} {
			if resp := c.Do(t, "GET", list(other, "nas"), nil); resp.Status != 400 || resp.ErrorCode() != secrets.CodeOriginMismatch {
				t.Fatalf("%s: %s", other, resp)
			}
		}
		rogue.assertUntouched(t)
	})

	t.Run("PostToAnotherServer", func(t *testing.T) {
		resp := c.Do(t, "POST", "/api/nodes/hub/webdav/list", map[string]any{"base_url": rogue.URL + "/", "secret_name": "nas", "path": "/"})
		if resp.Status != 400 || resp.ErrorCode() != secrets.CodeOriginMismatch {
			t.Fatalf("POST: %s", resp)
		}
		rogue.assertUntouched(t)
	})

	t.Run("BoundServerStillListsWithGet", func(t *testing.T) {
		resp := crossSiteGet(t, hub, c, list(strings.ToUpper(davURL[:4])+davURL[4:]+"/", "nas")) // scheme case differs
		if resp.Status != 200 || !strings.Contains(string(resp.Body), "a.txt") {
			t.Fatalf("GET on the bound server: %s", resp)
		}
	})

	t.Run("UnboundCredentialGoesNowhere", func(t *testing.T) {
		if resp := c.Do(t, "PUT", "/api/secrets/webdav/fresh", map[string]string{"username": user, "password": pass}); resp.Status != 204 {
			t.Fatalf("save: %s", resp)
		}
		for _, base := range []string{rogue.URL + "/", davURL} {
			resp := c.Do(t, "GET", list(base, "fresh"), nil)
			if resp.Status != 400 || resp.ErrorCode() != secrets.CodeOriginUnbound || !strings.Contains(string(resp.Body), "bind") {
				t.Fatalf("unbound %s: %s", base, resp)
			}
		}
		rogue.assertUntouched(t)
	})

	t.Run("TypedPasswordOnlyByPost", func(t *testing.T) {
		q := url.Values{"base_url": {davURL}, "username": {user}, "password": {pass}, "path": {"/"}}
		if resp := c.Do(t, "GET", "/api/nodes/hub/webdav/list?"+q.Encode(), nil); resp.Status != 400 || resp.ErrorCode() != "typed_credentials_need_post" {
			t.Fatalf("typed password in a GET: %s", resp)
		}
		resp := c.Do(t, "POST", "/api/nodes/hub/webdav/list", map[string]any{"base_url": davURL, "username": user, "password": pass, "path": "/"})
		if resp.Status != 200 || !strings.Contains(string(resp.Body), "a.txt") {
			t.Fatalf("typed POST: %s", resp)
		}
		// An operator may browse with saved credentials only: a typed one would let them point the
		// Hub at any server.
		op := hub.AddUser(t, c, "dav-operator", "operator")
		if resp := op.Do(t, "POST", "/api/nodes/hub/webdav/list", map[string]any{"base_url": rogue.URL, "username": "u", "password": "p", "path": "/"}); resp.Status != 403 || resp.ErrorCode() != "typed_credentials_forbidden" {
			t.Fatalf("operator typed POST: %s", resp)
		}
		// Without the CSRF token the POST form is refused before anything is sent.
		bare := *c
		bare.CSRF = ""
		if resp := bare.Do(t, "POST", "/api/nodes/hub/webdav/list", map[string]any{"base_url": rogue.URL, "username": "u", "password": "p", "path": "/"}); resp.ErrorCode() != "invalid_csrf" {
			t.Fatalf("POST without CSRF: %s", resp)
		}
		rogue.assertUntouched(t)
	})

	t.Run("JobSave", func(t *testing.T) {
		spec := func(base, secret string) json.RawMessage {
			b, _ := json.Marshal(map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{"/srv"}},
				"target": map[string]any{"type": "webdav", "base_url": base, "secret_name": secret}})
			return b
		}
		resp := c.Do(t, "POST", "/api/jobs", jobBody(map[string]any{"spec": spec(rogue.URL+"/x", "nas")}))
		if resp.Status != 400 || resp.ErrorCode() != secrets.CodeOriginMismatch {
			t.Fatalf("job on another server: %s", resp)
		}
		if resp := c.Do(t, "POST", "/api/jobs", jobBody(map[string]any{"spec": spec(davURL+"/jobs", "nas")})); resp.Status != 200 {
			t.Fatalf("job on the bound server: %s", resp)
		}
		// A job saved by the admin binds an unbound credential to its server, and then only there.
		if resp := c.Do(t, "POST", "/api/jobs", jobBody(map[string]any{"name": "binds", "spec": spec(davURL+"/x", "fresh")})); resp.Status != 200 {
			t.Fatalf("job with an unbound credential: %s", resp)
		}
		if _, m := c.Get(t, "/api/secrets/webdav/fresh"); len(m["allowed_origins"].([]any)) != 1 || m["allowed_origins"].([]any)[0] != davOrigin {
			t.Fatalf("fresh after the job: %v", m)
		}
		if resp := c.Do(t, "GET", list(rogue.URL, "fresh"), nil); resp.Status != 400 || resp.ErrorCode() != secrets.CodeOriginMismatch {
			t.Fatalf("fresh on another server: %s", resp)
		}
		rogue.assertUntouched(t)
	})

	t.Run("SecretOrigins", func(t *testing.T) {
		// Re-saving without origin fields (an older client) keeps the binding.
		if resp := c.Do(t, "PUT", "/api/secrets/webdav/nas", map[string]string{"username": user, "password": pass}); resp.Status != 204 {
			t.Fatalf("re-save: %s", resp)
		}
		if _, m := c.Get(t, "/api/secrets/webdav/nas"); len(m["allowed_origins"].([]any)) != 1 {
			t.Fatalf("binding lost on re-save: %v", m)
		}
		// allowed_origins replaces the list; a bad entry is a 400 and changes nothing.
		if resp := c.Do(t, "PUT", "/api/secrets/webdav/nas", map[string]any{"username": user, "password": pass,
			"allowed_origins": []string{"ftp://x"}}); resp.Status != 400 || resp.ErrorCode() != "invalid_origin" {
			t.Fatalf("bad origin: %s", resp)
		}
		if resp := c.Do(t, "PUT", "/api/secrets/webdav/nas", map[string]any{"username": user, "password": pass,
			"allowed_origins": []string{davURL, "https://Other.example"}}); resp.Status != 204 {
			t.Fatalf("replace: %s", resp)
		}
		_, m := c.Get(t, "/api/secrets/webdav/nas")
		if got := m["allowed_origins"].([]any); len(got) != 2 || got[0] != davOrigin || got[1] != "https://other.example:443" {
			t.Fatalf("replaced origins: %v", m)
		}
		if m["password"] != pass || m["username"] != user {
			t.Fatalf("payload after replace: %v", m)
		}
	})
}
