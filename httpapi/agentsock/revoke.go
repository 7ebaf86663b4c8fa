package agentsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/storage"
)

// CodeAgentRevoked is the error code (and summary.error_code) of the runs, restores and verifies
// that an agent's revocation ended.
const CodeAgentRevoked = "agent_revoked"

const (
	revokedMessage = "the agent was revoked, so it can no longer run this or report on it"
	revokedHint    = "bind the job to another node, or enroll the machine again, and run it again"
)

// Revoke revokes an agent and, in the same transaction, ends what it still owes: a revoked agent
// can never connect again, so its jobs' queued runs and its open tasks (running backups,
// restores, verifies) would wait forever. Each fails with agent_revoked and a failed event (a run
// whose cancel was requested ends canceled), finished runs are notified like any other, and the
// tasks are closed. Then its live socket is closed with 4001. Revoking again keeps the first
// revocation time and ends anything left. ErrNotFound (wrapped) for an unknown agent.
func (h *Hub) Revoke(ctx context.Context, agentID string) error {
	now := h.clock.Now().Unix()
	var runsEnded, opsEnded, notified int
	// Under eventMu and resultMu, like applying an event or a result: one that arrives meanwhile
	// finds its task closed, and one applied before lands before the final event.
	h.eventMu.Lock()
	defer h.eventMu.Unlock()
	h.resultMu.Lock()
	err := h.db.Write(ctx, func(q storage.Q) error {
		runsEnded, opsEnded, notified = 0, 0, 0
		if err := q.RevokeAgent(ctx, agentID, now); err != nil {
			return err
		}
		queued, err := q.ListQueuedRunIDsOfAgent(ctx, agentID)
		if err != nil {
			return err
		}
		for _, id := range queued {
			ended, notice, err := h.failRevokedRun(ctx, q, id, now)
			if err != nil {
				return err
			}
			runsEnded, notified = runsEnded+ended, notified+notice
		}
		for {
			// Each task is closed below, so the first page is always the next one.
			page, err := q.ListOpenAgentTasks(ctx, agentID, 0, "", resendPage)
			if err != nil {
				return err
			}
			for _, t := range page {
				if isOperation(t.Kind) {
					ended, err := failRevokedOperation(ctx, q, t.ID, now)
					if err != nil {
						return err
					}
					opsEnded += ended
				} else {
					ended, notice, err := h.failRevokedRun(ctx, q, t.RunID, now)
					if err != nil {
						return err
					}
					runsEnded, notified = runsEnded+ended, notified+notice
				}
				if err := closeRevokedTask(ctx, q, t, now); err != nil {
					return err
				}
			}
			if len(page) < resendPage {
				return nil
			}
		}
	})
	h.resultMu.Unlock()
	if err != nil {
		return fmt.Errorf("revoke agent %s: %w", agentID, err)
	}
	h.Disconnect(agentID, protocol.CloseRevoked, "revoked")
	if notified > 0 && h.cfg.Notifier != nil {
		h.cfg.Notifier.Wake()
	}
	h.log.Info().Str("agent_id", agentID).Int("runs_failed", runsEnded).Int("operations_failed", opsEnded).Msg("agent revoked")
	return nil
}

// failRevokedRun ends a queued or running run with agent_revoked (canceled when a cancel was
// requested) and its final event, and queues its notifications, as the run queue's finish does.
// It reports whether the run ended here and whether notifications were queued.
func (h *Hub) failRevokedRun(ctx context.Context, q storage.Q, runID string, now int64) (ended, notified int, err error) {
	code := CodeAgentRevoked
	run, applied, err := q.FinishRun(ctx, storage.RunFinish{ID: runID, Status: storage.RunFailed, EndedAt: now, Error: &code})
	if errors.Is(err, storage.ErrNotFound) || (err == nil && !applied) {
		return 0, 0, nil // deleted with its job, or over already
	}
	if err != nil {
		return 0, 0, err
	}
	ev := storage.RunEvent{RunID: runID, TS: now, Level: "error", Kind: "failed", Message: revokedMessage}
	fields := map[string]any{"error": code, "error_kind": "agent", "hint": revokedHint, "error_envelope": map[string]any{
		"schema_version": 1, "code": code, "kind": "agent", "retriable": false, "hint": revokedHint, "message": revokedMessage,
	}}
	if run.Status == storage.RunCanceled {
		ev.Level, ev.Kind, ev.Message = "warn", "canceled", "canceled"
		fields = map[string]any{}
		if run.CancelReason != nil {
			fields["reason"] = *run.CancelReason
		}
	}
	b, _ := json.Marshal(fields) // plain values: cannot fail
	raw := string(b)
	ev.FieldsJSON = &raw
	if err := q.AppendRunEvents(ctx, []storage.RunEvent{ev}); err != nil {
		return 0, 0, err
	}
	if run.Status == storage.RunCanceled || h.cfg.Notifier == nil {
		return 1, 0, nil // canceled runs are not notified (as on the Hub)
	}
	job, err := q.GetJob(ctx, run.JobID)
	if err != nil {
		return 0, 0, fmt.Errorf("fail run %s of a revoked agent: %w", runID, err)
	}
	n, err := h.cfg.Notifier.EnqueueFinished(ctx, q, run, job.SpecJSON)
	if err != nil {
		return 0, 0, err
	}
	return 1, min(n, 1), nil
}

// failRevokedOperation ends a running restore or verify with agent_revoked, as the operations
// service ends one whose agent reported a failure.
func failRevokedOperation(ctx context.Context, q storage.Q, opID string, now int64) (int, error) {
	msg := CodeAgentRevoked + ": " + revokedMessage
	op, applied, err := q.FinishOperation(ctx, storage.OperationFinish{ID: opID, Status: storage.OperationFailed, EndedAt: now, Error: &msg})
	if err != nil || !applied {
		return 0, err
	}
	ev := storage.OperationEvent{TS: now, Level: "error", Kind: "failed", Message: msg}
	if op.Status == storage.OperationCanceled {
		ev.Level, ev.Kind, ev.Message = "warn", "canceled", "canceled"
	} else {
		fields := `{"error":"` + CodeAgentRevoked + `"}`
		ev.FieldsJSON = &fields
	}
	if err := q.AppendOperationEvent(ctx, opID, ev); err != nil {
		return 0, err
	}
	return 1, nil
}

// closeRevokedTask completes an open task with the failed result the agent can no longer send.
func closeRevokedTask(ctx context.Context, q storage.Q, t storage.AgentTask, now int64) error {
	msg := revokedMessage
	summary := json.RawMessage(`{"error_code":"` + CodeAgentRevoked + `"}`)
	var result any = &protocol.TaskResult{TaskID: t.ID, RunID: t.RunID, Status: protocol.StatusFailed, Summary: summary, Error: &msg}
	if isOperation(t.Kind) {
		result = &protocol.OperationResult{OpID: t.ID, Status: protocol.StatusFailed, Summary: summary, Error: &msg}
	}
	raw, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("encode result of task %s: %w", t.ID, err)
	}
	rs := string(raw)
	if _, err := q.CompleteAgentTask(ctx, t.ID, &rs, &msg, now); err != nil {
		return err
	}
	return nil
}
