package storage

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/rs/zerolog"
)

// A database at the schema before 0070, holding the job and snapshot JSON of today's releases,
// gets each existing WebDAV credential bound to the origins its jobs and snapshots use.
func TestMigrationBindsWebDAVSecretsToTheirJobsOrigins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	all, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var before []migration
	for _, m := range all {
		if m.version < 70 {
			before = append(before, m)
		}
	}
	if err := applyMigrations(ctx, db, zerolog.Nop(), before); err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, s := range [][2]string{{"hub", "nas"}, {"hub", "box"}, {"hub", "unused"}, {"a1", "nas"}, {"hub", "v2cred"}, {"hub", "old"}} {
		exec(`INSERT INTO secrets(id, node_id, kind, name, kid, nonce, ciphertext, created_at, updated_at)
			VALUES (?, ?, 'webdav', ?, 1, x'00', x'00', 1, 1)`, s[0]+"/"+s[1], s[0], s[1])
	}
	job := func(id, agent, spec string) {
		var a any
		if agent != "" {
			a = agent
		}
		exec(`INSERT INTO jobs(id, name, agent_id, spec_json, created_at, updated_at) VALUES (?, ?, ?, ?, 1, 1)`, id, id, a, spec)
	}
	// v1 as the web UI saves it; the same credential on a second server, with an upper-case host
	// and an explicit default port.
	job("j1", "", `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"webdav","base_url":"https://DAV.example.com/remote.php/dav/files/me/","secret_name":"nas","part_size_bytes":268435456}}`)
	job("j2", "", `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"webdav","base_url":"http://backup.lan:8080/dav?x=1","secret_name":"nas"}}`)
	job("j3", "", `{"v":1,"type":"sqlite","source":{"path":"/db"},"target":{"type":"webdav","base_url":"https://box.example.net:443","secret_name":"box"}}`)
	// An agent's job uses the agent's own credential of the same name.
	job("j4", "a1", `{"v":1,"type":"filesystem","source":{"paths":["/x"]},"target":{"type":"webdav","base_url":"https://agent-dav.example.org/","secret_name":"nas"}}`)
	// v2 envelope with auth_refs.
	job("j5", "", `{"v":2,"source":{"type":"filesystem","config":{"paths":["/a"]}},"target":{"type":"webdav","config":{"base_url":"https://v2.example.com/dav"},"auth_refs":{"webdav_credentials":{"secret_type":"webdav","secret_name":"v2cred"}}}}`)
	// Not WebDAV, not JSON, a secret that does not exist: nothing bound, nothing fails.
	job("j6", "", `{"v":1,"type":"filesystem","source":{"paths":["/a"]},"target":{"type":"local_dir","base_dir":"/backups"}}`)
	job("j7", "", `not json`)
	job("j8", "", `{"v":1,"type":"filesystem","source":{"paths":["/a"]},"target":{"type":"webdav","base_url":"https://ghost.example.com/","secret_name":"missing"}}`)
	job("j9", "", `{"v":2,"source":{"type":"filesystem","config":{}},"target":{"type":"webdav","config":{"base_url":"https://x.example.com/"},"auth_refs":"oops"}}`)
	// A snapshot written when job j3 still pointed at another server keeps that server usable for
	// restores and deletes.
	exec(`INSERT INTO runs(id, job_id, status, started_at) VALUES ('r1', 'j3', 'success', 1)`)
	exec(`INSERT INTO run_artifacts(run_id, job_id, node_id, target_type, target_snapshot_json, artifact_format, status, started_at, ended_at, created_at, updated_at)
		VALUES ('r1', 'j3', 'hub', 'webdav', '{"node_id":"hub","target":{"type":"webdav","base_url":"https://old.example.com/dav/","secret_name":"old"}}', 'archive_v1', 'present', 1, 2, 2, 2)`)

	if err := applyMigrations(ctx, db, zerolog.Nop(), all); err != nil {
		t.Fatal(err)
	}
	q := Q{db}
	for _, tc := range []struct {
		node, name string
		want       []string
	}{
		{"hub", "nas", []string{"http://backup.lan:8080", "https://dav.example.com"}},
		{"hub", "box", []string{"https://box.example.net:443"}},
		{"hub", "unused", []string{}},
		{"a1", "nas", []string{"https://agent-dav.example.org"}},
		{"hub", "v2cred", []string{"https://v2.example.com"}},
		{"hub", "old", []string{"https://old.example.com"}},
		{"hub", "missing", []string{}},
	} {
		got, err := q.SecretOrigins(ctx, tc.node, "webdav", tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s/%s: origins %q, want %q", tc.node, tc.name, got, tc.want)
		}
	}
	// Deleting the secret takes its origins along.
	if _, err := db.ExecContext(ctx, "PRAGMA foreign_keys = ON"); err != nil {
		t.Fatal(err)
	}
	if ok, err := q.DeleteSecret(ctx, "hub", "webdav", "nas"); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if got, _ := q.SecretOrigins(ctx, "hub", "webdav", "nas"); len(got) != 0 {
		t.Errorf("origins outlived their secret: %q", got)
	}
}

func TestBindSecretOriginIfUnbound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "b.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w := db.Writer()
	if err := w.UpsertSecret(ctx, SecretRow{ID: "1", NodeID: "hub", Kind: "webdav", Name: "n", KID: 1, Nonce: []byte{0}, Ciphertext: []byte{0}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := w.BindSecretOriginIfUnbound(ctx, "hub", "webdav", "n", "https://a:443", 1); err != nil || !ok {
		t.Fatalf("first bind: %v %v", ok, err)
	}
	if ok, err := w.BindSecretOriginIfUnbound(ctx, "hub", "webdav", "n", "https://b:443", 1); err != nil || ok {
		t.Fatalf("a bound secret was bound again: %v %v", ok, err)
	}
	if ok, err := w.BindSecretOriginIfUnbound(ctx, "hub", "webdav", "nope", "https://b:443", 1); err != nil || ok {
		t.Fatalf("a missing secret was bound: %v %v", ok, err)
	}
	got, _ := w.SecretOrigins(ctx, "hub", "webdav", "n")
	if !reflect.DeepEqual(got, []string{"https://a:443"}) {
		t.Fatalf("origins %q", got)
	}
}
