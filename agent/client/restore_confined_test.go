package client_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// TestAgentRestoreStaysInItsDestination: the agent restores and verifies with engine/restore,
// so a snapshot crafted by whoever can write to the target (a directory x/ then a symlink x
// pointing outside; a symlink planted as a parent between entries; a setuid file) must not
// change anything outside the destination on the agent's machine either, must be reported as
// refused, and must not plant set-id bits unless the task asks to keep them.
func TestAgentRestoreStaysInItsDestination(t *testing.T) {
	t.Parallel()
	outside := testtool.NewOutsideFile(t)
	base := t.TempDir()
	jobID, runID := protocol.NewUUID(), protocol.NewUUID()
	testtool.WriteCraftedSnapshot(t, filepath.Join(base, jobID, runID), jobID, runID, []testtool.CraftedEntry{
		{Name: "su", Body: "#!/bin/sh\n", Mode: 0o6755},
		{Name: "x/", Type: tar.TypeDir, Mode: 0o777},
		{Name: "x", Type: tar.TypeSymlink, Link: outside.Path},
		{Name: "y/", Type: tar.TypeDir, Mode: 0o777},
		{Name: "y", Type: tar.TypeSymlink, Link: outside.Dir},
		{Name: "y/pwned", Body: "pwned"},
	})
	s := protocol.SnapshotTarget(localdir.Redact(base).JSON())
	snap := &s
	exec := client.NewRestoreExecutor(t.TempDir(), nil, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	emit := func(*protocol.OperationEvent) {}

	for _, tc := range []struct {
		name   string
		keep   bool
		suMode fs.FileMode
	}{
		{"Default", false, 0o755},
		{"KeepSpecialBits", true, fs.ModeSetuid | fs.ModeSetgid | 0o755},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "restored")
			res := exec.Restore(context.Background(), &protocol.RestoreTask{TaskID: protocol.NewUUID(), Task: protocol.RestoreRequest{
				RunID: runID, JobID: jobID, Snapshot: snap, ConflictPolicy: "overwrite", KeepSpecialBits: tc.keep,
				Destination: &protocol.RestoreDestination{Type: "local_fs", Directory: dest}}}, emit)
			var sum struct {
				ErrorCode       string `json:"error_code"`
				Refused         int64  `json:"refused"`
				KeepSpecialBits bool   `json:"keep_special_bits"`
			}
			if err := json.Unmarshal(res.Summary, &sum); err != nil {
				t.Fatal(err)
			}
			if res.Status != protocol.StatusFailed || sum.ErrorCode != "unsafe_entries" || sum.Refused < 3 || sum.KeepSpecialBits != tc.keep {
				t.Fatalf("restore: %s %s", res.Status, res.Summary)
			}
			outside.Untouched(t)
			fi, err := os.Lstat(filepath.Join(dest, "su"))
			if err != nil || fi.Mode() != tc.suMode {
				t.Fatalf("su restored as %v (%v), want %v", fi.Mode(), err, tc.suMode)
			}
		})
	}
	t.Run("Verify", func(t *testing.T) {
		res := exec.Verify(context.Background(), &protocol.VerifyTask{TaskID: protocol.NewUUID(), Task: protocol.VerifyRequest{
			RunID: runID, JobID: jobID, Snapshot: snap}}, emit)
		var sum struct {
			ErrorCode string `json:"error_code"`
		}
		json.Unmarshal(res.Summary, &sum)
		if res.Status != protocol.StatusFailed || sum.ErrorCode != "unsafe_entries" {
			t.Fatalf("verify: %s %s", res.Status, res.Summary)
		}
		outside.Untouched(t)
	})
}
