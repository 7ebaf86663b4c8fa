package client

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
)

func openManaged(t *testing.T, dir string) *Managed {
	t.Helper()
	m, err := OpenManaged(dir, func() time.Time { return time.Unix(1700000000, 0) })
	if err != nil {
		t.Fatal(err)
	}
	if err := m.bind("agent-1"); err != nil {
		t.Fatal(err)
	}
	return m
}

func checkCred(t *testing.T, m *Managed, kind, name, want string, origins []string) {
	t.Helper()
	ctx := context.Background()
	got, err := m.Get(ctx, "", kind, name)
	if err != nil || string(got) != want {
		t.Fatalf("Get(%s, %s) = %s, %v; want %s", kind, name, got, err, want)
	}
	allowed, err := m.AllowedOrigins(ctx, "", kind, name)
	if err != nil || !slices.Equal(allowed, origins) {
		t.Fatalf("AllowedOrigins(%s, %s) = %v, %v; want %v", kind, name, allowed, err, origins)
	}
}

// TestManagedReadsTheOriginalSecretsMessage: a Hub that sends only the webdav list (the original,
// or a Hub before the generic list) still gives the agent its WebDAV credential, in the payload
// shape the webdav driver opens, and it survives a restart.
func TestManagedReadsTheOriginalSecretsMessage(t *testing.T) {
	t.Parallel()
	const msg = `{"node_id":"agent-1","issued_at":5,"webdav":[{"name":"nas","username":"u","password":"p:w","updated_at":4,
		"origins_bound":true,"allowed_origins":["https://dav.example"]}],"backup_age_identities":[]}`
	var snap protocol.SecretsSnapshot
	if err := json.Unmarshal([]byte(msg), &snap); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m := openManaged(t, dir)
	if err := m.SaveSecrets(&snap); err != nil {
		t.Fatal(err)
	}
	want := `{"username":"u","password":"p:w"}`
	checkCred(t, m, secrets.KindWebDAV, "nas", want, []string{"https://dav.example"})
	checkCred(t, openManaged(t, dir), secrets.KindWebDAV, "nas", want, []string{"https://dav.example"})
}

// TestManagedKeepsEveryCredentialKind: the generic list carries any driver's secret kind; it wins
// over the legacy list when both are sent.
func TestManagedKeepsEveryCredentialKind(t *testing.T) {
	t.Parallel()
	snap := &protocol.SecretsSnapshot{NodeID: "agent-1",
		WebDAV: []protocol.WebDAVSecret{{Name: "nas", Username: "u", Password: "p"}},
		Secrets: []protocol.NodeSecret{
			{Kind: "webdav", Name: "nas", Payload: json.RawMessage(`{"username":"u","password":"p"}`), OriginsBound: true, AllowedOrigins: []string{"https://a"}},
			{Kind: "objstore", Name: "bucket", Payload: json.RawMessage(`{"key":"k"}`), OriginsBound: true, AllowedOrigins: []string{"https://b"}},
		}}
	dir := t.TempDir()
	if err := openManaged(t, dir).SaveSecrets(snap); err != nil {
		t.Fatal(err)
	}
	m := openManaged(t, dir)
	checkCred(t, m, "webdav", "nas", `{"username":"u","password":"p"}`, []string{"https://a"})
	checkCred(t, m, "objstore", "bucket", `{"key":"k"}`, []string{"https://b"})
	if _, err := m.Get(context.Background(), "", "webdav", "bucket"); err == nil {
		t.Fatal("a credential answered for another kind")
	}
}

// TestManagedLoadsTheFileOfEarlierAgents: secrets.json as agents before the generic list wrote
// it ({"webdav": {name: sealed WebDAVSecret}}) still loads after an upgrade.
func TestManagedLoadsTheFileOfEarlierAgents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := openManaged(t, dir)
	enc, err := m.seal(secrets.KindWebDAV, "nas", protocol.WebDAVSecret{Name: "nas", Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"v": 1, "node_id": "agent-1", "issued_at": 1, "saved_at": 1,
		"webdav": map[string]sealedDoc{"nas": enc}})
	if err := os.MkdirAll(filepath.Join(dir, "agent", "managed"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "agent", "managed", "secrets.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	m2 := openManaged(t, dir)
	if got, err := m2.Get(context.Background(), "", "webdav", "nas"); err != nil || string(got) != `{"username":"u","password":"p"}` {
		t.Fatalf("Get = %s, %v", got, err)
	}
	if _, err := m2.AllowedOrigins(context.Background(), "", "webdav", "nas"); err != secrets.ErrOriginsUntracked {
		t.Fatalf("AllowedOrigins = %v, want untracked", err)
	}
}

// TestManagedIgnoresEntriesWithoutAUsableKind: an entry of the generic list with no kind, or
// claiming the backup_age_identity kind (which travels in its own list), is neither served as a
// credential nor saved; the other entries of the message still are.
func TestManagedIgnoresEntriesWithoutAUsableKind(t *testing.T) {
	t.Parallel()
	snap := &protocol.SecretsSnapshot{NodeID: "agent-1", Secrets: []protocol.NodeSecret{
		{Kind: "", Name: "nas", Payload: json.RawMessage(`{"username":"x","password":"y"}`)},
		{Kind: secrets.KindBackupAgeIdentity, Name: "key", Payload: json.RawMessage(`"AGE-SECRET-KEY-1"`)},
		{Kind: "webdav", Name: "nas", Payload: json.RawMessage(`{"username":"u","password":"p"}`), OriginsBound: true},
	}}
	dir := t.TempDir()
	if err := openManaged(t, dir).SaveSecrets(snap); err != nil {
		t.Fatal(err)
	}
	m := openManaged(t, dir)
	for _, k := range []string{"", secrets.KindBackupAgeIdentity} {
		for _, name := range []string{"nas", "key"} {
			if got, err := m.Get(context.Background(), "", k, name); err == nil {
				t.Fatalf("Get(%q, %q) = %s; want not found", k, name, got)
			}
		}
	}
	checkCred(t, m, "webdav", "nas", `{"username":"u","password":"p"}`, nil)
}

// TestAgentIgnoresSecretsForAnotherNode: a secrets message naming another node neither replaces
// the agent's credentials nor adds the other node's.
func TestAgentIgnoresSecretsForAnotherNode(t *testing.T) {
	t.Parallel()
	a := bareAgent(t, clock.Real{})
	a.id = &Identity{AgentID: "agent-1"}
	a.o.Managed = openManaged(t, t.TempDir())
	a.onSecrets(&protocol.SecretsSnapshot{NodeID: "agent-1", Secrets: []protocol.NodeSecret{
		{Kind: "webdav", Name: "nas", Payload: json.RawMessage(`{"username":"u","password":"p"}`), OriginsBound: true}}})
	a.onSecrets(&protocol.SecretsSnapshot{NodeID: "agent-2", Secrets: []protocol.NodeSecret{
		{Kind: "webdav", Name: "other", Payload: json.RawMessage(`{"username":"x","password":"y"}`), OriginsBound: true}}})
	checkCred(t, a.o.Managed, "webdav", "nas", `{"username":"u","password":"p"}`, nil)
	if got, err := a.o.Managed.Get(context.Background(), "", "webdav", "other"); err == nil {
		t.Fatalf("another node's credential was kept: %s", got)
	}
}
