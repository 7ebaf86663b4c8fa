package agentsock_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/drills"
	"github.com/bastion-backup/bastion/engine/jobgate"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/storage"
)

// TestScheduledDrillOnAgent: an agent job's scheduled restore test runs on its agent, through
// the real WebSocket: the drill fires on the fake clock's trigger, the agent restores a sample
// (sample_files random files plus the largest) into its scratch space, checks it against the index
// and the job records the proof.
func TestScheduledDrillOnAgent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := newRestoreSetup(t, false)
	_, _, jobID, runID := rs.backupNewTree(t, 2<<20, `{"type":"none"}`)

	// Saturday noon; the drill is due Sunday 03:00 UTC.
	clk := clock.NewFake(time.Date(2026, 1, 3, 12, 0, 0, 0, time.UTC))
	cfg := `{"schedule":"0 3 * * 0","timezone":"UTC","mode":"restore_test","sample_files":3}`
	if err := rs.db.Writer().SetJobVerificationConfig(ctx, jobID, &cfg, clk.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	svc := drills.New(drills.Config{DB: rs.db, Clock: clk, Log: zerolog.New(zerolog.NewTestWriter(t)), Ops: rs.ops,
		Gate: jobgate.New(1), Agents: rs.hub})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	clk.Set(time.Date(2026, 1, 4, 3, 0, 5, 0, time.UTC))
	svc.Wake()
	var v storage.JobVerification
	waitFor(t, "the drill's result on the job", func() bool {
		var err error
		v, err = rs.db.Reader().GetJobVerification(ctx, jobID)
		return err == nil && v.LastVerifyStatus != nil && v.RunningOpID == nil
	})
	op, err := rs.db.Reader().GetOperation(ctx, *v.LastVerifyOpID)
	if err != nil {
		t.Fatal(err)
	}
	var res restore.VerifyResult
	if op.Status != storage.OperationSuccess || op.NodeID != rs.agentID || deref(op.SubjectID) != runID ||
		json.Unmarshal([]byte(deref(op.SummaryJSON)), &res) != nil || !res.OK || res.FilesTotal != 4 || res.FilesOK != 4 {
		t.Fatalf("drill on the agent: %+v %s %s", op, deref(op.Error), deref(op.SummaryJSON))
	}
	if *v.LastVerifyStatus != storage.OperationSuccess || v.LastProvenAt == nil {
		t.Fatalf("job verification %+v", v)
	}
	waitFor(t, "result acknowledged on the agent", func() bool { return resultAckedOnAgent(rs.dataDir, op.ID) })
}
