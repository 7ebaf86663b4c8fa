package agentsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/storage"
)

// RunService is what the bridge needs from the run queue (engine/runs.Service).
type RunService interface {
	Finish(ctx context.Context, runID string, out runs.Outcome) error
	AppendEvents(ctx context.Context, runID string, events ...runs.Event) error
	SetProgress(ctx context.Context, runID string, progressJSON []byte) error
	SetProgressNoStageEvents(ctx context.Context, runID string, progressJSON []byte) error
	Wake()
}

// RunBridge connects the run queue and the agent sockets: it is the queue's runs.AgentRunner and
// the Hub's TaskSink. Build it first, give it to agentsock.New (Sink, OnConnect) and to
// runs.New (Agents), then Attach both:
//
//	bridge := agentsock.NewRunBridge()
//	hub := agentsock.New(agentsock.Config{..., Sink: bridge, OnConnect: bridge.AgentConnected})
//	svc := runs.New(runs.Config{..., Agents: bridge})
//	bridge.Attach(hub, svc)
type RunBridge struct {
	mu   sync.RWMutex
	hub  *Hub
	runs RunService
}

var _ runs.AgentRunner = (*RunBridge)(nil)
var _ TaskSink = (*RunBridge)(nil)

// NewRunBridge returns an unattached bridge.
func NewRunBridge() *RunBridge { return &RunBridge{} }

// Attach completes the bridge.
func (b *RunBridge) Attach(h *Hub, svc RunService) {
	b.mu.Lock()
	b.hub, b.runs = h, svc
	b.mu.Unlock()
}

func (b *RunBridge) get() (*Hub, RunService) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.hub, b.runs
}

// AgentConnected wakes the run queue so that the agent's queued runs start.
func (b *RunBridge) AgentConnected(string) {
	if _, svc := b.get(); svc != nil {
		svc.Wake()
	}
}

// Connected reports whether the agent has a live socket.
func (b *RunBridge) Connected(agentID string) bool {
	h, _ := b.get()
	return h != nil && h.Connected(agentID)
}

var errNotClaimed = errors.New("run is no longer queued")

// Start moves the queued run to running and stores its agent task in one transaction, then sends
// the task. The task carries the job spec as stored (secret names, never credentials).
func (b *RunBridge) Start(ctx context.Context, run storage.Run, job storage.Job) (bool, error) {
	h, svc := b.get()
	if h == nil || job.AgentID == nil || !h.Connected(*job.AgentID) {
		return false, nil
	}
	agentID := *job.AgentID
	now := h.clock.Now().Unix()
	// Validate before encoding: the task embeds the spec as raw JSON, so a spec that is not JSON
	// would fail the encoding and be retried on every queue pass instead of failing its run.
	spec, err := jobspec.ParseAndValidate([]byte(job.SpecJSON))
	if err != nil {
		return true, b.failUnsent(ctx, h, svc, run.ID, now, &runs.RunError{
			Code: runs.CodeInvalidSpec, Kind: "config", Message: "the job spec is invalid: " + err.Error()})
	}
	recipient, err := recipientOf(ctx, h.cfg.Keys, spec)
	if err != nil {
		return true, b.failUnsent(ctx, h, svc, run.ID, now, &runs.RunError{Code: backup.CodeEncryptionKey, Kind: "config",
			Hint: "The backup encryption key could not be loaded or created.", Message: err.Error()})
	}
	payload, err := json.Marshal(&protocol.Task{TaskID: run.ID, Task: protocol.BackupTask{RunID: run.ID, JobID: job.ID,
		JobName: job.Name, StartedAt: now, Spec: json.RawMessage(job.SpecJSON), AgeRecipient: recipient}})
	if err != nil {
		return false, fmt.Errorf("encode task of run %s: %w", run.ID, err)
	}
	_, err = h.Dispatch(ctx, storage.AgentTask{ID: run.ID, AgentID: agentID, RunID: run.ID, Kind: storage.AgentTaskBackup,
		PayloadJSON: string(payload)}, func(q storage.Q) error {
		claimed, err := q.ClaimRun(ctx, run.ID, now)
		if err != nil {
			return err
		}
		if !claimed {
			return errNotClaimed
		}
		return q.SetRunTargetSnapshot(ctx, run.ID, targetSnapshotJSON(opener.FromSpec(agentID, spec.Target)))
	})
	if errors.Is(err, errNotClaimed) {
		return true, nil // canceled or taken meanwhile: nothing to start, go on with the next
	}
	if err != nil {
		return false, err
	}
	if err := svc.AppendEvents(ctx, run.ID,
		runs.Event{Kind: "start", Message: "start"},
		runs.Event{Kind: "dispatch", Message: "sent to agent", Fields: map[string]string{"agent_id": agentID}},
	); err != nil {
		h.log.Warn().Err(err).Str("run_id", run.ID).Msg("record dispatch events")
	}
	return true, nil
}

// failUnsent claims a run that cannot be sent (nothing could run it) and fails it, as the queue
// does for Hub runs.
func (b *RunBridge) failUnsent(ctx context.Context, h *Hub, svc RunService, runID string, now int64, re *runs.RunError) error {
	claimed, err := false, error(nil)
	err = h.db.Write(ctx, func(q storage.Q) error {
		claimed, err = q.ClaimRun(ctx, runID, now)
		return err
	})
	if err != nil || !claimed {
		return err
	}
	return svc.Finish(ctx, runID, runs.Outcome{Status: storage.RunFailed, Error: re})
}

// Cancel records the cancel on the run's agent task and sends it if the agent is connected; it is
// replayed after every re-send of the task.
func (b *RunBridge) Cancel(ctx context.Context, _, runID string) error {
	h, _ := b.get()
	if h == nil {
		return nil
	}
	return h.CancelTask(ctx, runID)
}

// Event records an agent's run event, or its progress snapshot. The run queue adds an event when
// an agent run's progress enters a stage, unless the agent sends those events itself (its hello
// says so): else each stage would be logged twice.
func (b *RunBridge) Event(ctx context.Context, t storage.AgentTask, ev *protocol.RunEvent) error {
	h, svc := b.get()
	if svc == nil {
		return errors.New("run queue not attached")
	}
	if ev.Kind == "progress_snapshot" {
		if len(ev.Fields) == 0 {
			return nil
		}
		if h != nil && h.sendsStageEvents(t.AgentID) {
			return svc.SetProgressNoStageEvents(ctx, t.RunID, ev.Fields)
		}
		return svc.SetProgress(ctx, t.RunID, ev.Fields)
	}
	e := runs.Event{Level: ev.Level, Kind: ev.Kind, Message: ev.Message}
	if len(ev.Fields) > 0 && string(ev.Fields) != "null" {
		e.Fields = json.RawMessage(ev.Fields)
	}
	return svc.AppendEvents(ctx, t.RunID, e)
}

// Result finishes the run (first result wins, a requested cancel wins over any result).
func (b *RunBridge) Result(ctx context.Context, t storage.AgentTask, res *protocol.TaskResult) error {
	_, svc := b.get()
	if svc == nil {
		return errors.New("run queue not attached")
	}
	out := runs.Outcome{}
	switch res.Status {
	case protocol.StatusSuccess:
		out.Status, out.Summary = storage.RunSuccess, res.Summary
		out.Artifact = artifactOf(t, res.Summary)
	case protocol.StatusCanceled:
		out.Status = storage.RunCanceled
	default:
		code, msg := agentFailure(res.Summary, res.Error, "the agent reported the run failed")
		out.Status, out.Summary = storage.RunFailed, res.Summary
		out.Error = &runs.RunError{Code: code, Kind: "agent", Message: msg}
	}
	if len(out.Summary) == 0 || string(out.Summary) == "null" {
		out.Summary = nil
	}
	return svc.Finish(ctx, t.RunID, out)
}

// artifactOf describes the snapshot a successful agent run stored: where, from its task's spec
// (what the agent ran), and its format and sizes from the run's summary.
func artifactOf(t storage.AgentTask, summary json.RawMessage) *runs.Artifact {
	var task protocol.Task
	if json.Unmarshal([]byte(t.PayloadJSON), &task) != nil {
		return nil
	}
	spec, err := jobspec.ParseAndValidate(task.Task.Spec)
	if err != nil {
		return nil
	}
	rt := opener.FromSpec(t.AgentID, spec.Target)
	a := &runs.Artifact{NodeID: t.AgentID, TargetType: rt.Target.Type,
		TargetSnapshot: json.RawMessage(targetSnapshotJSON(rt)), Format: spec.Pipeline.Format}
	// A live result cannot be refused without the agent re-sending it forever: sizes out of range
	// are stored as unknown instead (the run and its snapshot stay).
	_ = fillFromSummary(a, summary)
	if a.Format == "" {
		a.Format = jobspec.FormatArchiveV1
	}
	return a
}

// MaxReportedSize bounds every size or count an agent reports for a snapshot (2^53 bytes is
// 8 PiB, and the largest integer a JSON reader in the browser keeps exactly). Stored sizes are
// summed by /metrics and the dashboard; a larger value could only be a lie.
const MaxReportedSize = 1 << 53

// errSummarySizes: a summary reports a size or count that is negative or above MaxReportedSize.
var errSummarySizes = errors.New("summary sizes must be between 0 and 2^53")

// fillFromSummary takes a snapshot's format and sizes from its run's summary (backup.Summary):
// source files, directories and bytes, and the bytes sent to the target. A summary without them
// (an agent of another make) leaves them unknown; so does one with a size out of range, which is
// reported as errSummarySizes.
func fillFromSummary(a *runs.Artifact, summary json.RawMessage) error {
	var sum struct {
		ArtifactFormat string          `json:"artifact_format"`
		Metrics        *backup.Metrics `json:"metrics"`
	}
	if len(summary) == 0 || json.Unmarshal(summary, &sum) != nil {
		return nil
	}
	if sum.ArtifactFormat != "" {
		a.Format = sum.ArtifactFormat
	}
	if sum.Metrics == nil {
		return nil
	}
	m := sum.Metrics
	if m.TransferTotalBytes < 0 || m.TransferTotalBytes > MaxReportedSize {
		return errSummarySizes
	}
	if st := m.SourceTotal; st != nil && (st.Files > MaxReportedSize || st.Dirs > MaxReportedSize || st.Bytes > MaxReportedSize) {
		return errSummarySizes
	}
	transfer := m.TransferTotalBytes
	a.TransferBytes = &transfer
	if st := m.SourceTotal; st != nil {
		// In range (checked above), so each conversion is exact.
		files, dirs, bytes := int64(st.Files), int64(st.Dirs), int64(st.Bytes)
		a.SourceFiles, a.SourceDirs, a.SourceBytes = &files, &dirs, &bytes
	}
	return nil
}

// targetSnapshotJSON is the stored form of a run's target (runs.target_snapshot_json,
// run_artifacts.target_snapshot_json).
func targetSnapshotJSON(rt targets.RunTarget) string {
	b, _ := json.Marshal(rt) // strings only: cannot fail
	return string(b)
}
