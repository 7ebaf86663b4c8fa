package client

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestRefusesAHubDataDir: an agent pointed at a Hub's data directory (it holds bastion.db) refuses
// to start, before it empties runs/ and operations/ there.
func TestRefusesAHubDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	running := filepath.Join(dir, "runs", "hub-run", "staging.part")
	if err := os.MkdirAll(filepath.Dir(running), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, HubDatabaseFile), running} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := New(context.Background(), Options{HubURL: "http://127.0.0.1:1", EnrollToken: "t", DataDir: dir, Logger: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), HubDatabaseFile) {
		t.Fatalf("New in a Hub's data directory: %v", err)
	}
	if _, err := os.Stat(running); err != nil {
		t.Fatalf("the Hub's running backup was touched: %v", err)
	}
}
