package all_test

import (
	"encoding/json"
	"testing"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
)

// TestStoredSnapshotsOfEarlierVersionsOpen: run target snapshots as stored before targets became
// drivers decode with their driver and are written back byte for byte.
func TestStoredSnapshotsOfEarlierVersionsOpen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ stored, typ, secret, endpoint, local string }{
		{`{"node_id":"hub","target":{"type":"local_dir","base_dir":"/srv/bk"}}`, "local_dir", "", "", "/srv/bk"},
		{`{"node_id":"agent-1","target":{"type":"webdav","base_url":"https://dav.example/b/","secret_name":"nas"}}`, "webdav", "nas", "https://dav.example/b/", ""},
	} {
		var rt targets.RunTarget
		if err := json.Unmarshal([]byte(tc.stored), &rt); err != nil {
			t.Fatal(err)
		}
		cfg, err := all.Registry.ParseRedacted(rt.Target)
		if err != nil {
			t.Fatalf("%s: %v", tc.stored, err)
		}
		if cfg.Type() != tc.typ || rt.Target.Type != tc.typ || cfg.SecretName() != tc.secret || rt.Target.SecretName != tc.secret || cfg.Endpoint() != tc.endpoint {
			t.Errorf("%s: type %s secret %q endpoint %q", tc.stored, cfg.Type(), cfg.SecretName(), cfg.Endpoint())
		}
		if dir, _ := all.Registry.LocalPathOf(rt.Target); dir != tc.local {
			t.Errorf("%s: local path %q, want %q", tc.stored, dir, tc.local)
		}
		if b, _ := json.Marshal(rt); string(b) != tc.stored {
			t.Errorf("re-encoded %s, want %s", b, tc.stored)
		}
		if got := string(cfg.Redact().JSON()); got != string(rt.Target.JSON()) {
			t.Errorf("Redact %s, want %s", got, rt.Target.JSON())
		}
	}
}

// TestDriversAreListedOnce: every driver has a type and decodes its own minimal object.
func TestDriversAreListedOnce(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, d := range all.Drivers {
		if d.Type() == "" || seen[d.Type()] {
			t.Fatalf("driver type %q empty or listed twice", d.Type())
		}
		seen[d.Type()] = true
		if _, ok := all.Registry.Lookup(d.Type()); !ok {
			t.Fatalf("registry misses %s", d.Type())
		}
	}
	if _, err := all.Registry.Parse(json.RawMessage(`{"type":"nope"}`)); err == nil {
		t.Fatal("an unknown type parsed")
	}
}

// TestStoredSnapshotsAreReadLeniently: a stored description with fields its driver does not know
// (part_size_bytes, empty fields, another version's) still opens, as when it was read into one
// struct; a job spec stays strict.
func TestStoredSnapshotsAreReadLeniently(t *testing.T) {
	t.Parallel()
	var red targets.Redacted
	if err := json.Unmarshal([]byte(`{"type":"webdav","base_url":"https://dav.example/b/","base_dir":"","secret_name":"nas","part_size_bytes":5,"future":{"x":1}}`), &red); err != nil {
		t.Fatal(err)
	}
	cfg, err := all.Registry.ParseRedacted(red)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(cfg.Redact().JSON()); got != `{"type":"webdav","base_url":"https://dav.example/b/","secret_name":"nas"}` {
		t.Fatalf("Redact = %s", got)
	}
	if _, err := all.Registry.Parse(red.JSON()); err == nil {
		t.Fatal("strict Parse accepted unknown fields")
	}
	if _, err := all.Registry.ParseRedacted(targets.NewRedacted(map[string]string{"type": "nope"})); targets.KindOf(err) != targets.KindConfig {
		t.Fatalf("unknown type: %v", err)
	}
}
