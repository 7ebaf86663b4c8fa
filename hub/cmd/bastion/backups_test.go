package main

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestHubWiresBackupServices: at start the Hub removes what interrupted runs and operations
// left in its data directory, and serves the snapshot, operation and maintenance routes.
func TestHubWiresBackupServices(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	for _, p := range []string{"runs/3f0c/staging/payload.part000001", "operations/9a1b/staging/payload.part000002"} {
		p = filepath.Join(data, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("left by a crash"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base, stop, _ := startHub(t, "--data-dir", data)
	defer stop()
	for _, dir := range []string{"runs", "operations"} {
		if entries, _ := os.ReadDir(filepath.Join(data, dir)); len(entries) != 0 {
			t.Errorf("%s/ still holds %v after start", dir, entries)
		}
	}
	for _, path := range []string{"/api/jobs/j/snapshots", "/api/operations/o", "/api/maintenance/incomplete-cleanup", "/api/runs/r/entries"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %d, want 401 (the route is served behind the session check)", path, resp.StatusCode)
		}
	}
}
