package operations

import (
	"context"
	"path/filepath"

	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/storage"
)

// FinishHook runs inside the transaction that ends an operation (first end only); it must use q
// only. An error rolls the end back, like a run's finish hooks.
type FinishHook func(ctx context.Context, q storage.Q, op storage.Operation) error

// OnFinished registers a hook run in the ending transaction and one run after it commits (either
// may be nil). Call before any operation starts.
func (s *Service) OnFinished(in FinishHook, after func(op storage.Operation)) {
	if in != nil {
		s.finishHooks = append(s.finishHooks, in)
	}
	if after != nil {
		s.afterHooks = append(s.afterHooks, after)
	}
}

// DrillRequest is a restore drill of a job's snapshot (engine/drills builds it).
type DrillRequest struct {
	// OperationID is the id the operation takes (the caller records it as the job's running
	// drill before the operation can end); "" generates one.
	OperationID string
	RunID       string
	// Node runs the drill: opener.HubNode or the job's agent. An agent job's drill runs on its
	// agent, the node that reaches the target with its own credentials.
	Node        string
	Mode        string // jobspec.VerifyModeVerify | VerifyModeRestoreTest (recorded on the start event)
	SampleFiles int    // restore_test only; 0: every file
	Source      string // schedule | catch_up | manual
}

// SnapshotTarget is where a run's snapshot lives, for callers that must know before a drill
// starts (the per-target drill limit).
func (s *Service) SnapshotTarget(ctx context.Context, runID string) (targets.RunTarget, error) {
	snap, err := s.snapshotOf(ctx, runID)
	return snap.target, err
}

// StartDrill starts a drill: an operation of kind verify, like StartVerify, whose start event says
// it is a drill (mode, sample, source). With SampleFiles only that many random files plus the
// largest are restored and checked.
func (s *Service) StartDrill(ctx context.Context, req DrillRequest) (storage.Operation, error) {
	snap, err := s.snapshotOf(ctx, req.RunID)
	if err != nil {
		return storage.Operation{}, err
	}
	fields := map[string]any{"run_id": req.RunID, "job_id": snap.run.JobID, "drill": true, "mode": req.Mode,
		"source": req.Source}
	if req.SampleFiles > 0 {
		fields["sample_files"] = req.SampleFiles
	}
	dbName := sqliteSnapshotName(snap.run.SummaryJSON)
	if req.Node != "" && req.Node != opener.HubNode {
		rv, ok := s.remote.(RemoteVerifier)
		if !ok {
			return storage.Operation{}, &InputError{Code: CodeAgentUnsupported, Field: "node_id", Reason: "verify",
				Message: "this Hub cannot run drills on agents"}
		}
		node := req.Node
		op := s.newOperation(storage.OperationVerify, node, snap.run.ID)
		if req.OperationID != "" {
			op.ID = req.OperationID
		}
		fields["node_id"] = node
		task := VerifyTask{OperationID: op.ID, JobID: snap.run.JobID, RunID: snap.run.ID, Target: snap.target,
			SQLiteSnapshot: dbName, SampleFiles: req.SampleFiles}
		return s.startRemote(ctx, op, fields,
			func(ctx context.Context) error { return rv.CheckVerify(ctx, node, task) },
			func(ctx context.Context) error { return rv.StartVerify(ctx, node, task) })
	}
	op := s.newOperation(storage.OperationVerify, opener.HubNode, snap.run.ID)
	if req.OperationID != "" {
		op.ID = req.OperationID
	}
	return s.launch(ctx, op, fields, func(ctx context.Context, o *opRun) (any, error) {
		tgt, err := s.opener.Open(ctx, snap.target)
		if err != nil {
			return nil, err
		}
		res, err := restore.Verify(ctx, restore.VerifyRequest{
			JobID: snap.run.JobID, RunID: snap.run.ID, Target: tgt, ScratchDir: filepath.Join(o.dir, "verify"),
			Keys: s.keys, SQLiteSnapshot: dbName, Events: o, Progress: o.rep, SampleFiles: req.SampleFiles,
		})
		if err != nil {
			return res, err
		}
		if !res.OK {
			return res, &VerifyError{res}
		}
		return res, nil
	})
}
