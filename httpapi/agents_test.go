package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

func startAgentsHub(t *testing.T) (*apitest.Hub, *agentsock.Hub) {
	t.Helper()
	var sock *agentsock.Hub
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		sock = agentsock.New(agentsock.Config{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger})
		cfg.Agents = sock
	}))
	t.Cleanup(sock.Close) // before the Hub's own cleanup: no agent socket outlives the test
	return hub, sock
}

// connectAgent enrolls a real agent with a token from the API and runs it until the test ends.
func connectAgent(t *testing.T, hub *apitest.Hub, c *apitest.Client, sock *agentsock.Hub, name string) (*client.Agent, chan error) {
	t.Helper()
	status, tok := c.Post(t, "/api/agents/enrollment-tokens", map[string]any{"ttl_seconds": 600, "remaining_uses": 1})
	if status != http.StatusOK || tok["remaining_uses"].(float64) != 1 {
		t.Fatalf("create token: %d %v", status, tok)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := client.New(ctx, client.Options{HubURL: hub.URL, EnrollToken: tok["token"].(string), Name: name, DataDir: t.TempDir(),
		Heartbeat: time.Second, Logger: zerolog.Nop()})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	eventually(t, "agent connected", func() bool { return sock.Connected(a.ID()) })
	return a, done
}

func TestAgentsAPI(t *testing.T) {
	t.Parallel()
	hub, sock := startAgentsHub(t)
	c := hub.Login(t)
	a, _ := connectAgent(t, hub, c, sock, "nas")

	t.Run("ListShowsOnline", func(t *testing.T) {
		var page struct {
			Items []struct {
				ID, ConfigSyncStatus string
				Name                 *string
				Online, Connected    bool
				Labels               []string
			}
			Total int
		}
		resp := c.Do(t, "GET", "/api/agents?status=online", nil)
		resp.Decode(t, &page)
		if resp.Status != 200 || page.Total != 1 || page.Items[0].ID != a.ID() || !page.Items[0].Online || *page.Items[0].Name != "nas" {
			t.Fatalf("list: %s", resp)
		}
		resp = c.Do(t, "GET", "/api/agents?status=offline", nil)
		resp.Decode(t, &page)
		if page.Total != 0 {
			t.Fatalf("offline list: %s", resp)
		}
		if resp := c.Do(t, "GET", "/api/agents?page=0", nil); resp.Status != 400 || resp.ErrorCode() != "invalid_page" {
			t.Fatalf("page 0: %s", resp)
		}
	})

	t.Run("DetailCarriesTheHello", func(t *testing.T) {
		var caps map[string]any
		eventually(t, "hello stored", func() bool {
			st, body := c.Get(t, "/api/agents/"+a.ID())
			if st != 200 {
				t.Fatalf("detail: %d %v", st, body)
			}
			caps, _ = body["capabilities"].(map[string]any)
			return caps != nil
		})
		if caps["type"] != "hello" || caps["name"] != "nas" {
			t.Fatalf("capabilities = %v, want the agent's hello", caps)
		}
	})

	t.Run("Labels", func(t *testing.T) {
		path := "/api/agents/" + a.ID() + "/labels"
		// Each change answers 204 with no body (as the original); the agent carries the labels.
		for _, step := range []struct {
			method, path string
			labels       []string
			want         string
		}{
			{"PUT", path, []string{"Home", "nas", "nas"}, "[home nas]"},
			{"POST", path + "/add", []string{"eu-1"}, "[eu-1 home nas]"},
			{"POST", path + "/remove", []string{"home"}, "[eu-1 nas]"},
		} {
			if resp := c.Do(t, step.method, step.path, map[string]any{"labels": step.labels}); resp.Status != http.StatusNoContent || len(resp.Body) != 0 {
				t.Fatalf("%s %s: %s", step.method, step.path, resp)
			}
			if _, body := c.Get(t, "/api/agents/"+a.ID()); fmt.Sprint(body["labels"]) != step.want {
				t.Fatalf("after %s %s: labels %v, want %s", step.method, step.path, body["labels"], step.want)
			}
		}
		for _, bad := range []string{"", "has space", "x23456789012345678901234567890123", "ümlaut"} {
			if resp := c.Do(t, "POST", path+"/add", map[string]any{"labels": []string{bad}}); resp.Status != 400 || resp.ErrorCode() != "invalid_label" {
				t.Fatalf("label %q: %s", bad, resp)
			}
		}
		var page struct{ Total int }
		c.Do(t, "GET", "/api/agents?labels[]=nas&labels[]=eu-1&labels_mode=and", nil).Decode(t, &page)
		if page.Total != 1 {
			t.Fatalf("and filter: %d", page.Total)
		}
		c.Do(t, "GET", "/api/agents?labels[]=nas&labels[]=nope&labels_mode=and", nil).Decode(t, &page)
		if page.Total != 0 {
			t.Fatalf("and filter with a missing label: %d", page.Total)
		}
		c.Do(t, "GET", "/api/agents?labels[]=nope&labels[]=nas&labels_mode=or", nil).Decode(t, &page)
		if page.Total != 1 {
			t.Fatalf("or filter: %d", page.Total)
		}
		resp := c.Do(t, "GET", "/api/agents/labels", nil)
		if arr := resp.JSONArray(t); len(arr) != 2 {
			t.Fatalf("labels: %s", resp)
		}
	})

	t.Run("FsListThroughAgent", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("hi"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, node := range []string{"hub", a.ID()} {
			var res struct {
				Entries []struct{ Name, Kind string }
				Total   int
			}
			resp := c.Do(t, "GET", "/api/nodes/"+node+"/fs/list?path="+dir+"&type_sort=dirs_first", nil)
			resp.Decode(t, &res)
			if resp.Status != 200 || res.Total != 2 || res.Entries[0].Name != "sub" || res.Entries[0].Kind != "dir" {
				t.Fatalf("%s: %s", node, resp)
			}
			if resp := c.Do(t, "GET", "/api/nodes/"+node+"/fs/list?path=relative", nil); resp.Status != 400 || resp.ErrorCode() != "invalid_path" {
				t.Fatalf("%s relative: %s", node, resp)
			}
			if resp := c.Do(t, "GET", "/api/nodes/"+node+"/fs/list?path="+filepath.Join(dir, "f"), nil); resp.Status != 400 || resp.ErrorCode() != "not_directory" {
				t.Fatalf("%s file: %s", node, resp)
			}
		}
	})

	t.Run("RotateThenRevoke", func(t *testing.T) {
		if s, body := c.Post(t, "/api/agents/"+a.ID()+"/rotate-key", nil); s != 200 || body["agent_key"] == "" {
			t.Fatalf("rotate: %d %v", s, body)
		}
		eventually(t, "old connection dropped", func() bool { return !sock.Connected(a.ID()) })
		if s, _ := c.Post(t, "/api/agents/"+a.ID()+"/revoke", nil); s != 204 {
			t.Fatalf("revoke: %d", s)
		}
		if resp := c.Do(t, "POST", "/api/agents/"+a.ID()+"/rotate-key", nil); resp.Status != 409 {
			t.Fatalf("rotate revoked: %s", resp)
		}
		var page struct{ Total int }
		c.Do(t, "GET", "/api/agents?status=revoked", nil).Decode(t, &page)
		if page.Total != 1 {
			t.Fatalf("revoked filter: %d", page.Total)
		}
		if resp := c.Do(t, "GET", "/api/nodes/"+a.ID()+"/fs/list?path=/", nil); resp.Status != 409 || resp.ErrorCode() != "agent_offline" {
			t.Fatalf("fs list of a revoked agent: %s", resp)
		}
	})
}

func TestAgentsAPINeedsSessionAndCSRF(t *testing.T) {
	t.Parallel()
	hub, _ := startAgentsHub(t)
	anon := hub.Client(t)
	if resp := anon.Do(t, "GET", "/api/agents", nil); resp.Status != 401 {
		t.Fatalf("anonymous list: %s", resp)
	}
	c := hub.Login(t)
	c.CSRF = ""
	if resp := c.Do(t, "POST", "/api/agents/enrollment-tokens", map[string]any{}); resp.Status != 401 || resp.ErrorCode() != "invalid_csrf" {
		t.Fatalf("token without CSRF: %s", resp)
	}
}

func TestEnrollmentTokenValidation(t *testing.T) {
	t.Parallel()
	hub, _ := startAgentsHub(t)
	c := hub.Login(t)
	for body, code := range map[string]string{
		`{"ttl_seconds":0}`:       "invalid_ttl",
		`{"remaining_uses":0}`:    "invalid_remaining_uses",
		`{"ttl_seconds":"x"}`:     "invalid_json",
		`{"ttl_seconds":9999999}`: "invalid_ttl",
	} {
		if resp := c.Do(t, "POST", "/api/agents/enrollment-tokens", body); resp.Status != 400 || resp.ErrorCode() != code {
			t.Errorf("%s: %s, want %s", body, resp, code)
		}
	}
	s, body := c.Post(t, "/api/agents/enrollment-tokens", map[string]any{})
	if s != 200 || body["remaining_uses"] != nil || body["expires_at"].(float64) != float64(apitest.Epoch.Unix()+3600) {
		t.Fatalf("defaults: %d %v", s, body)
	}
}
