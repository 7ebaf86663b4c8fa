package backupexec

import (
	"context"
	"fmt"

	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/storage"
)

// IndexSnapshot is a run finish hook: inside the transaction that records a run's success it
// indexes the snapshot the run stored (run_artifacts, status present), so a successful run and
// its snapshot row never exist one without the other. Agent results go through it too.
func IndexSnapshot(ctx context.Context, q storage.Q, f runs.Finished) error {
	a := f.Outcome.Artifact
	if f.Run.Status != storage.RunSuccess || a == nil {
		return nil
	}
	ended := f.Run.StartedAt
	if f.Run.EndedAt != nil {
		ended = *f.Run.EndedAt
	}
	if err := q.UpsertRunArtifact(ctx, storage.RunArtifact{
		RunID: f.Run.ID, JobID: f.Run.JobID, NodeID: a.NodeID, TargetType: a.TargetType,
		TargetSnapshotJSON: string(a.TargetSnapshot), ArtifactFormat: a.Format, Status: storage.SnapshotPresent,
		StartedAt: f.Run.StartedAt, EndedAt: ended,
		SourceFiles: a.SourceFiles, SourceDirs: a.SourceDirs, SourceBytes: a.SourceBytes, TransferBytes: a.TransferBytes,
		CreatedAt: ended, UpdatedAt: ended,
	}); err != nil {
		return fmt.Errorf("index snapshot of run %s: %w", f.Run.ID, err)
	}
	return nil
}
