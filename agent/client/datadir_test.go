package client

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
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

// TestRestoreRefusesTheAgentsDataDirThroughSymlinks: a restore destination that is, or lies
// below, a symlink to the agent's data directory is refused before anything is written.
func TestRestoreRefusesTheAgentsDataDirThroughSymlinks(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	link := filepath.Join(t.TempDir(), "to-data")
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	e := NewRestoreExecutor(data, nil, zerolog.Nop())
	for _, dir := range []string{data, link, filepath.Join(link, "restored")} {
		res := e.Restore(context.Background(), &protocol.RestoreTask{TaskID: "op-1", Task: protocol.RestoreRequest{OpID: "op-1", RunID: "r",
			Destination: &protocol.RestoreDestination{Type: "local_fs", Directory: dir}}}, func(*protocol.OperationEvent) {})
		if res.Status != protocol.StatusFailed || !strings.Contains(string(res.Summary), CodeInvalidDestination) {
			t.Fatalf("%s: %+v %s", dir, res, res.Summary)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "restored")); !os.IsNotExist(err) {
		t.Fatalf("something was written in the data directory: %v", err)
	}
}
