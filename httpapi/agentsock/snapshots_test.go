package agentsock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func TestConfigAndSecretsSnapshots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	store := newSecretStore(t, db)
	log := zerolog.New(zerolog.NewTestWriter(t))
	snaps := agentsock.StoreSnapshots{DB: db, Store: store}
	h := agentsock.New(agentsock.Config{DB: db, Logger: log, Snapshots: snaps})
	th := serveTestHub(t, h, db)

	dataDir := t.TempDir()
	managed, err := client.OpenManaged(dataDir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	token := newEnrollToken(t, db, nil)
	ra := startAgentWith(t, client.Options{HubURL: th.url, EnrollToken: token, DataDir: dataDir, Heartbeat: time.Second, Managed: managed})
	id := ra.a.ID()
	waitFor(t, "agent connected", func() bool { return h.Connected(id) })

	if err := store.Put(ctx, id, secrets.KindWebDAV, "nas", []byte(`{"username":"u","password":"sekrit-pw"}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.PushSecrets(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "secret on the agent", func() bool {
		b, err := managed.Get(ctx, "hub", secrets.KindWebDAV, "nas")
		return err == nil && bytes.Contains(b, []byte("sekrit-pw"))
	})

	job := storage.Job{ID: "j1", Name: "docs", AgentID: &id, ScheduleTimezone: "UTC", OverlapPolicy: "queue", MissedRunPolicy: "run_once",
		SpecJSON: `{"v":1,"type":"filesystem","source":{"paths":["/srv/docs-path"]},"target":{"type":"local_dir","base_dir":"/bk"}}`, CreatedAt: 1, UpdatedAt: 1}
	if err := db.Writer().InsertJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	outcome, err := h.SyncConfig(ctx, id)
	if err != nil || outcome != agentsock.SyncSent {
		t.Fatalf("sync: %q %v", outcome, err)
	}
	if outcome, _ := h.SyncConfig(ctx, id); outcome != agentsock.SyncUnchanged {
		t.Fatalf("second sync of the same snapshot: %q", outcome)
	}
	waitFor(t, "config applied", func() bool {
		a, _ := db.Reader().GetAgent(ctx, id)
		return a.AppliedConfigSnapshotID != nil && a.DesiredConfigSnapshotID != nil && *a.AppliedConfigSnapshotID == *a.DesiredConfigSnapshotID
	})
	if c := managed.Config(); c == nil || len(c.Jobs) != 1 || c.Jobs[0].JobID != "j1" {
		t.Fatalf("config on the agent: %+v", c)
	}
	for _, f := range []string{"config.json", "secrets.json"} {
		p := filepath.Join(dataDir, "agent", "managed", f)
		b, err := os.ReadFile(p)
		st, _ := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
		if bytes.Contains(b, []byte("sekrit-pw")) || bytes.Contains(b, []byte("docs-path")) {
			t.Fatalf("%s holds plaintext: %s", f, b)
		}
	}

	// A restarted agent has them without the Hub.
	ra.stop()
	<-ra.done
	ra.done <- nil
	again, err := client.OpenManaged(dataDir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(ctx, client.Options{HubURL: th.url, DataDir: dataDir, Managed: again, Logger: zerolog.Nop()}); err != nil {
		t.Fatal(err)
	}
	if c := again.Config(); c == nil || len(c.Jobs) != 1 {
		t.Fatalf("config after restart: %+v", c)
	}
	if _, err := again.Get(ctx, "hub", secrets.KindWebDAV, "nas"); err != nil {
		t.Fatalf("secret after restart: %v", err)
	}
	waitFor(t, "agent gone", func() bool { return !h.Connected(id) })
	if outcome, _ := h.SyncConfig(ctx, id); outcome != agentsock.SyncPendingOffline {
		t.Fatalf("sync while offline: %q", outcome)
	}
}

// TestSnapshotIDIsStable: the id depends on the jobs only, not on when it was issued.
func TestSnapshotIDIsStable(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	a := "agent-x"
	for _, id := range []string{"b", "a"} {
		if err := db.Writer().InsertJob(ctx, storage.Job{ID: id, Name: id, AgentID: &a, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
			MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	s1, err := agentsock.StoreSnapshots{DB: db, Clock: clock.NewFake(time.Unix(1, 0))}.Config(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := agentsock.StoreSnapshots{DB: db, Clock: clock.NewFake(time.Unix(99, 0))}.Config(ctx, a)
	if s1.SnapshotID != s2.SnapshotID || s1.Jobs[0].JobID != "a" {
		t.Fatalf("ids %s %s, first job %s", s1.SnapshotID, s2.SnapshotID, s1.Jobs[0].JobID)
	}
}

// TestSecretsSnapshotCarriesBothShapes: the Hub sends every target credential in the generic
// list and WebDAV ones in the original's list too, so that an agent of either age reads them.
func TestSecretsSnapshotCarriesBothShapes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	store := newSecretStore(t, db)
	if err := store.Put(ctx, "agent-1", secrets.KindWebDAV, "nas", []byte(`{"username":"u","password":"pw"}`)); err != nil {
		t.Fatal(err)
	}
	snap, err := agentsock.StoreSnapshots{DB: db, Store: store, Clock: clock.NewFake(time.Unix(5, 0))}.Secrets(ctx, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(snap)
	var wire struct {
		WebDAV  []map[string]any `json:"webdav"`
		Secrets []map[string]any `json:"secrets"`
	}
	if err := json.Unmarshal(b, &wire); err != nil {
		t.Fatal(err)
	}
	if len(wire.WebDAV) != 1 || wire.WebDAV[0]["name"] != "nas" || wire.WebDAV[0]["username"] != "u" || wire.WebDAV[0]["password"] != "pw" {
		t.Fatalf("original webdav list: %s", b)
	}
	if len(wire.Secrets) != 1 || wire.Secrets[0]["kind"] != "webdav" || wire.Secrets[0]["name"] != "nas" ||
		fmt.Sprint(wire.Secrets[0]["payload"]) != fmt.Sprint(map[string]any{"username": "u", "password": "pw"}) {
		t.Fatalf("generic list: %s", b)
	}
}

// heldSnapshots builds the first secrets snapshot, then holds it until release is closed:
// the hello's snapshot, built before a secret changes and queued after.
type heldSnapshots struct {
	agentsock.StoreSnapshots
	built   chan struct{}
	release chan struct{}
	calls   atomic.Int32
}

func (s *heldSnapshots) Secrets(ctx context.Context, agentID string) (*protocol.SecretsSnapshot, error) {
	sec, err := s.StoreSnapshots.Secrets(ctx, agentID)
	if s.calls.Add(1) == 1 {
		close(s.built)
		<-s.release
	}
	return sec, err
}

// TestStaleSecretsSnapshotNeverLandsLast: a secret saved while the agent's hello is being answered
// reaches the agent. The hello's snapshot was built before the secret existed; it must not be
// queued after, and so overwrite, the snapshot the save pushes (CI saw an S3 job on a freshly
// enrolled agent fail with s3_secret_missing).
func TestStaleSecretsSnapshotNeverLandsLast(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	store := newSecretStore(t, db)
	snaps := &heldSnapshots{StoreSnapshots: agentsock.StoreSnapshots{DB: db, Store: store},
		built: make(chan struct{}), release: make(chan struct{})}
	h := agentsock.New(agentsock.Config{DB: db, Logger: zerolog.New(zerolog.NewTestWriter(t)), Snapshots: snaps})
	th := serveTestHub(t, h, db)
	dataDir := t.TempDir()
	managed, err := client.OpenManaged(dataDir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ra := startAgentWith(t, client.Options{HubURL: th.url, EnrollToken: newEnrollToken(t, db, nil), DataDir: dataDir,
		Heartbeat: time.Second, Managed: managed})
	<-snaps.built
	id := ra.a.ID()
	if err := store.Put(ctx, id, "s3", "store", []byte(`{"access_key_id":"a","secret_access_key":"fresh-key"}`)); err != nil {
		t.Fatal(err)
	}
	pushed := make(chan error, 1)
	go func() { pushed <- h.PushSecrets(ctx, id) }()
	// Before the fix the push went out at once; now it waits for the hello's snapshot. Either way
	// the hello is let go, after the push or after a bound, and the push must end up last.
	select {
	case err := <-pushed:
		pushed <- err
	case <-time.After(500 * time.Millisecond):
	}
	close(snaps.release)
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	// Once the hello's config snapshot is applied the hello is done; a config sent after that
	// (the job makes it a new one) is queued behind every secrets snapshot, so its ack means the
	// agent has read them all.
	waitFor(t, "hello's config applied", func() bool {
		a, _ := db.Reader().GetAgent(ctx, id)
		return a.AppliedConfigSnapshotID != nil
	})
	if err := db.Writer().InsertJob(ctx, storage.Job{ID: "j1", Name: "j1", AgentID: &id, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
		MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	if outcome, err := h.SyncConfig(ctx, id); err != nil || outcome != agentsock.SyncSent {
		t.Fatalf("sync: %q %v", outcome, err)
	}
	waitFor(t, "barrier config applied", func() bool {
		a, _ := db.Reader().GetAgent(ctx, id)
		return a.AppliedConfigSnapshotID != nil && *a.AppliedConfigSnapshotID == *a.DesiredConfigSnapshotID
	})
	if b, err := managed.Get(ctx, "hub", "s3", "store"); err != nil || !bytes.Contains(b, []byte("fresh-key")) {
		t.Fatalf("the agent lost the secret saved during its hello: %q %v", b, err)
	}
}
