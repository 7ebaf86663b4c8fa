package agentsock

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/storage"
)

// CodeAgentTimeout is summary.error_code (and the run's or operation's error code) of a task
// given up because its agent stayed away.
const CodeAgentTimeout = "agent_timeout"

// timeoutLoopCap bounds the timeout loop's sleep, so that a clock step is noticed.
const timeoutLoopCap = 5 * time.Minute

// RunTimeouts gives up the tasks of agents that stay away. The rule: an open task (a running
// backup or restore) fails with agent_timeout once its agent has been disconnected for
// AgentTimeout (24 h by default), counted from the last frame the Hub heard from it, or from this
// Hub's start when that is later (a Hub that was itself down cannot blame the agent for it). A
// connected agent is never timed out, however long its task runs. A result the agent sends after
// that is acknowledged and ignored.
//
// It is a supervised Hub loop: one timer, sleeping until the earliest deadline (capped).
func (h *Hub) RunTimeouts(ctx context.Context) error {
	t := h.clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		next, err := h.timeoutPass(ctx)
		if err != nil && ctx.Err() == nil {
			h.log.Warn().Err(err).Msg("agent timeout pass")
			next = h.clock.Now().Add(time.Minute)
		}
		// Armed for the deadline itself: the time the pass took (giving up tasks writes to the
		// database and to the sinks) shortens the sleep instead of pushing the wake-up later.
		t.Reset(max(next.Sub(h.clock.Now()), 0))
	}
}

// timeoutPass gives up the tasks of agents away too long and returns when the next one is due
// (at most timeoutLoopCap after the pass began).
func (h *Hub) timeoutPass(ctx context.Context) (time.Time, error) {
	owing, err := h.db.Reader().ListAgentsOwingTasks(ctx)
	if err != nil {
		return time.Time{}, err
	}
	now := h.clock.Now()
	next := now.Add(timeoutLoopCap)
	for _, a := range owing {
		if h.Connected(a.AgentID) {
			continue
		}
		since := h.started
		if a.LastSeenAt != nil {
			if seen := time.Unix(*a.LastSeenAt, 0); seen.After(since) {
				since = seen
			}
		}
		if due := since.Add(h.cfg.AgentTimeout); due.After(now) {
			if due.Before(next) {
				next = due
			}
			continue
		}
		if err := h.giveUp(ctx, a.AgentID, now.Sub(since)); err != nil {
			return time.Time{}, err
		}
	}
	return next, nil
}

// giveUp fails every open task of an agent that has been away for `away`.
func (h *Hub) giveUp(ctx context.Context, agentID string, away time.Duration) error {
	for !h.Connected(agentID) {
		page, err := h.db.Reader().ListOpenAgentTasks(ctx, agentID, 0, "", resendPage)
		if err != nil {
			return err
		}
		for _, t := range page {
			if err := h.timeOut(ctx, t, away); err != nil {
				return err
			}
		}
		if len(page) < resendPage {
			return nil
		}
	}
	return nil
}

func (h *Hub) timeOut(ctx context.Context, t storage.AgentTask, away time.Duration) error {
	h.resultMu.Lock()
	defer h.resultMu.Unlock()
	if h.Connected(t.AgentID) {
		return nil // it came back meanwhile
	}
	cur, err := h.db.Reader().GetAgentTask(ctx, t.ID)
	if err != nil || cur.CompletedAt != nil {
		return err
	}
	msg := fmt.Sprintf("the agent has not been heard from for %s (the limit is %s); the Hub gave up waiting for it",
		away.Round(time.Minute), h.cfg.AgentTimeout)
	summary := json.RawMessage(`{"error_code":"` + CodeAgentTimeout + `"}`)
	switch {
	case isOperation(t.Kind):
		res := &protocol.OperationResult{OpID: t.ID, Status: protocol.StatusFailed, Summary: summary, Error: &msg}
		if h.cfg.Operations != nil {
			if err := h.cfg.Operations.OperationResult(ctx, t, res); err != nil {
				return fmt.Errorf("time out %s %s: %w", t.Kind, t.ID, err)
			}
		}
	default:
		res := &protocol.TaskResult{TaskID: t.ID, RunID: t.RunID, Status: protocol.StatusFailed, Summary: summary, Error: &msg}
		if h.cfg.Sink != nil {
			if err := h.cfg.Sink.Result(ctx, t, res); err != nil {
				return fmt.Errorf("time out run %s: %w", t.RunID, err)
			}
		}
	}
	h.log.Warn().Str("agent_id", t.AgentID).Str("task_id", t.ID).Str("kind", t.Kind).Dur("away", away).
		Msg("agent stayed away too long; its task failed with agent_timeout")
	return h.complete(ctx, t, &msg, protocol.StatusFailed)
}
