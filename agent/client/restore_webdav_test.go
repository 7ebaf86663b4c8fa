package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// TestAgentRestoreToWebDAV: the agent writes a WebDAV restore with its own copy of the
// credential, and only to a server the Hub bound that credential to; without the credential
// the operation fails saying so, and nothing is sent anywhere.
func TestAgentRestoreToWebDAV(t *testing.T) {
	t.Parallel()
	share := t.TempDir()
	baseURL, user, pass := testtool.StartRcloneWebDAV(t, share)
	var rogueHits atomic.Int64
	rogue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rogueHits.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(rogue.Close)

	base := t.TempDir()
	jobID, runID := protocol.NewUUID(), protocol.NewUUID()
	testtool.WriteCraftedSnapshot(t, filepath.Join(base, jobID, runID), jobID, runID, []testtool.CraftedEntry{
		{Name: "dir/", Type: '5', Mode: 0o755},
		{Name: "dir/file.txt", Body: "restored by the agent"},
	})
	s := protocol.SnapshotTarget(localdir.Redact(base).JSON())

	dataDir := t.TempDir()
	managed, err := client.OpenManaged(dataDir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]string{"username": user, "password": pass})
	if err := managed.SaveSecrets(&protocol.SecretsSnapshot{NodeID: "agent-1", Secrets: []protocol.NodeSecret{
		{Kind: "webdav", Name: "nas", Payload: payload, OriginsBound: true, AllowedOrigins: []string{baseURL}},
	}}); err != nil {
		t.Fatal(err)
	}
	exec := client.NewRestoreExecutor(dataDir, managed, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	restoreTo := func(dest protocol.RestoreDestination) (protocol.OperationResult, map[string]any) {
		res := exec.Restore(context.Background(), &protocol.RestoreTask{TaskID: protocol.NewUUID(), Task: protocol.RestoreRequest{
			RunID: runID, JobID: jobID, Snapshot: &s, ConflictPolicy: "overwrite", Destination: &dest}}, func(*protocol.OperationEvent) {})
		var sum map[string]any
		_ = json.Unmarshal(res.Summary, &sum)
		return res, sum
	}

	t.Run("Written", func(t *testing.T) {
		res, sum := restoreTo(protocol.RestoreDestination{Type: "webdav", BaseURL: baseURL, SecretName: "nas", Prefix: "from-agent"})
		if res.Status != protocol.StatusSuccess {
			t.Fatalf("result %+v %v", res, sum)
		}
		b, err := os.ReadFile(filepath.Join(share, "from-agent", "dir", "file.txt"))
		if err != nil || string(b) != "restored by the agent" {
			t.Fatalf("restored file: %q %v", b, err)
		}
		d := sum["destination"].(map[string]any)
		if d["type"] != "webdav" || d["prefix_url"] != baseURL+"from-agent/" || d["directory"] != nil {
			t.Fatalf("summary destination %v", d)
		}
	})
	t.Run("MissingSecret", func(t *testing.T) {
		res, sum := restoreTo(protocol.RestoreDestination{Type: "webdav", BaseURL: baseURL, SecretName: "other", Prefix: "x"})
		if res.Status != protocol.StatusFailed || sum["error_code"] != "missing_webdav_secret" || res.Error == nil {
			t.Fatalf("result %+v %v", res, sum)
		}
		if _, err := os.Stat(filepath.Join(share, "x")); err == nil {
			t.Fatal("something was written without a credential")
		}
	})
	t.Run("OtherOriginRefused", func(t *testing.T) {
		res, sum := restoreTo(protocol.RestoreDestination{Type: "webdav", BaseURL: rogue.URL + "/", SecretName: "nas", Prefix: "x"})
		if res.Status != protocol.StatusFailed || sum["error_code"] != "credential_origin_mismatch" {
			t.Fatalf("result %+v %v", res, sum)
		}
		if n := rogueHits.Load(); n != 0 {
			t.Fatalf("the other server got %d requests", n)
		}
	})
	t.Run("HostileBaseURL", func(t *testing.T) {
		// Each names the bound server one way or another; none may get the credential used
		// anywhere else, or anything written.
		withUser := strings.Replace(baseURL, "://", "://intruder:secret@", 1)
		for _, u := range []string{"", "file:///etc/", "ftp://" + strings.TrimPrefix(baseURL, "http://"), withUser,
			baseURL + "?redirect=" + rogue.URL, "http://" + strings.Repeat("a", 70000) + "/"} {
			res, sum := restoreTo(protocol.RestoreDestination{Type: "webdav", BaseURL: u, SecretName: "nas", Prefix: "hostile"})
			code, _ := sum["error_code"].(string)
			if res.Status != protocol.StatusFailed || (code != "invalid_destination" && !strings.HasPrefix(code, "credential_origin_")) {
				t.Fatalf("base_url %.80q: result %+v %v", u, res, sum)
			}
		}
		if _, err := os.Stat(filepath.Join(share, "hostile")); err == nil {
			t.Fatal("a hostile base_url got a restore written")
		}
		if n := rogueHits.Load(); n != 0 {
			t.Fatalf("the other server got %d requests", n)
		}
	})
	t.Run("HostilePrefix", func(t *testing.T) {
		res, sum := restoreTo(protocol.RestoreDestination{Type: "webdav", BaseURL: baseURL, SecretName: "nas", Prefix: "a/../../etc"})
		if res.Status != protocol.StatusFailed || sum["error_code"] != "invalid_destination" {
			t.Fatalf("result %+v %v", res, sum)
		}
	})
}
