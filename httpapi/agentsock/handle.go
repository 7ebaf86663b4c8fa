package agentsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/names"
	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// gate applies the HTTPS rule to agent routes: HTTPS through a trusted proxy, a loopback peer, or
// --insecure-http.
func (h *Hub) gate(r *http.Request) error {
	c := middleware.GetClient(r)
	if h.cfg.InsecureHTTP || c.HTTPS || c.Loopback() {
		return nil
	}
	return respond.BadRequest("insecure_not_allowed", "agents must reach the Hub over HTTPS (or start the Hub with --insecure-http)")
}

// handle processes one decoded frame on the reader goroutine. Database work here is short; the
// reader is the only goroutine that handles this connection's frames, which keeps them in order.
func (h *Hub) handle(c *conn, m protocol.Message, raw []byte) {
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	switch m := m.(type) {
	case *protocol.Ping:
		_ = c.send(&protocol.Pong{})
	case *protocol.Pong:
	case *protocol.Hello:
		h.onHello(ctx, c, m, raw)
	case *protocol.Ack:
		h.onAck(ctx, c, m.TaskID)
	case *protocol.RunEvent:
		h.onRunEvent(ctx, c, m)
	case *protocol.TaskResult:
		h.onResult(ctx, c, m)
	case *protocol.ConfigAck:
		// The id is one the Hub issued (an ingestID-shaped string); anything else is not stored.
		if !ingestID.MatchString(m.SnapshotID) {
			c.noisy.Warn().Int("snapshot_id_bytes", len(m.SnapshotID)).Msg("config_ack with an invalid snapshot id; ignored")
			return
		}
		if err := h.db.Writer().SetAppliedConfig(ctx, c.agentID, m.SnapshotID, h.clock.Now().Unix()); err != nil {
			c.log.Warn().Err(err).Msg("record config_ack")
		}
	case *protocol.OperationEventMsg:
		h.onOperationEvent(ctx, c, &m.Event)
	case *protocol.OperationResultMsg:
		h.onOperationResult(ctx, c, &m.Result)
	case *protocol.FsListResult:
		h.resolvePending(c, m.RequestID, m)
	case *protocol.WebdavListResult:
		h.resolvePending(c, m.RequestID, m)
	case *protocol.EntriesListResult:
		h.resolvePending(c, m.RequestID, m)
	case *protocol.SnapshotDeleteResult:
		h.resolvePending(c, deleteKey(m.RunID), m)
	case *protocol.SnapshotCleanupResult:
		h.resolvePending(c, cleanupKey(m.RunID), m)
	default:
		c.log.Debug().Str("type", m.MessageType()).Msg("ignoring agent message")
	}
}

func (h *Hub) onHello(ctx context.Context, c *conn, m *protocol.Hello, raw []byte) {
	// The hello is stored as sent and shown in the API, so it is refused whole rather than stored
	// in part: a name the Hub would not accept from a person is no better from an agent.
	name, refusal := helloName(m, raw)
	if refusal != "" {
		c.log.Warn().Str("reason", refusal).Int("hello_bytes", len(raw)).Msg("agent hello refused; closing the connection")
		c.refused = true // the reader drops what follows until the agent answers the close
		c.closeWith(protocol.CloseInvalidHello, "invalid hello: "+refusal)
		return
	}
	if iv, ok := protocol.HeartbeatInterval(m.HeartbeatSeconds); ok {
		d := 3 * iv
		d = max(d, 100*time.Millisecond) + d/10 // a little slack over the agent's own pong timeout
		c.readTimeout.Store(int64(d))
	}
	h.mu.Lock()
	if m.StageEvents {
		h.ownStages[c.agentID] = true
	} else {
		delete(h.ownStages, c.agentID)
	}
	h.mu.Unlock()
	if err := h.db.Writer().SetAgentCapabilities(ctx, c.agentID, string(raw), name, h.clock.Now().Unix()); err != nil {
		c.log.Warn().Err(err).Msg("store agent hello")
	}
	if h.cfg.Snapshots == nil {
		return
	}
	// Age keys copied for operations that ended while the Hub was down or the agent away leave
	// the agent with the secrets snapshot below.
	if rb, ok := h.cfg.Operations.(*RestoreBridge); ok {
		if err := rb.releaseKeys(ctx, h, c.agentID, ""); err != nil {
			c.log.Warn().Err(err).Msg("remove age keys no operation needs")
		}
	}
	if err := h.sendSecrets(ctx, c, false); err != nil {
		c.log.Warn().Err(err).Msg("send secrets snapshot")
	}
	if _, err := h.pushConfig(ctx, c.agentID, c); err != nil {
		c.log.Warn().Err(err).Msg("send config snapshot")
	}
}

// helloName checks a hello's size and name. It returns the trimmed name (nil when the agent sent
// none, or a blank one) or, when the hello must be refused, a short reason for the close frame
// and the log (never the name itself).
func helloName(m *protocol.Hello, raw []byte) (*string, string) {
	if len(raw) > protocol.MaxHelloBytes {
		return nil, fmt.Sprintf("larger than %d bytes", protocol.MaxHelloBytes)
	}
	if m.Name == nil || strings.TrimSpace(*m.Name) == "" {
		return nil, ""
	}
	n, err := names.Display(*m.Name)
	if err != nil {
		var ne *names.Error
		if errors.As(err, &ne) {
			return nil, "name " + ne.Reason
		}
		return nil, "name invalid"
	}
	return &n, ""
}

func (h *Hub) onAck(ctx context.Context, c *conn, taskID string) {
	if _, err := h.db.Writer().AckAgentTask(ctx, taskID, c.agentID, h.clock.Now().Unix()); err != nil {
		c.log.Warn().Err(err).Str("task_id", taskID).Msg("record task ack")
	}
}

// ownedTask loads a task (open or not: callers check) and checks that the sender owns it.
func (h *Hub) ownedTask(ctx context.Context, c *conn, taskID string) (storage.AgentTask, bool) {
	t, err := h.db.Reader().GetAgentTask(ctx, taskID)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			c.log.Warn().Err(err).Str("task_id", taskID).Msg("load agent task")
		}
		return t, false
	}
	if t.AgentID != c.agentID {
		c.noisy.Warn().Str("task_id", taskID).Str("owner", t.AgentID).Msg("agent reported on a task it does not own; ignored")
		return t, false
	}
	return t, true
}

// onRunEvent applies an event of an open backup task once (see onEvent).
func (h *Hub) onRunEvent(ctx context.Context, c *conn, ev *protocol.RunEvent) {
	if h.cfg.Sink == nil {
		return
	}
	h.onEvent(ctx, c, ev.RunID, ev.Seq, false, func(t storage.AgentTask) error {
		if err := validEvent(ev.Level, ev.Kind, ev.Message, ev.Fields); err != nil {
			return err
		}
		return h.cfg.Sink.Event(ctx, t, ev)
	})
}

// onOperationEvent applies an event of an open restore or verify once (see onEvent).
func (h *Hub) onOperationEvent(ctx context.Context, c *conn, ev *protocol.OperationEvent) {
	if h.cfg.Operations == nil {
		return
	}
	h.onEvent(ctx, c, ev.OpID, ev.Seq, true, func(t storage.AgentTask) error {
		if err := validEvent(ev.Level, ev.Kind, ev.Message, ev.Fields); err != nil {
			return err
		}
		return h.cfg.Operations.OperationEvent(ctx, t, ev)
	})
}

// onEvent applies an event of an open task of the sender once: a numbered event at or below the
// task's mark is a re-send of one already recorded. operation says which kind of task the event
// may belong to (operation_event for restores and verifies, run_event for backups). An event
// that fails validEvent is dropped, and its number still counts as seen: a re-send would be
// refused again.
func (h *Hub) onEvent(ctx context.Context, c *conn, taskID string, seq *int64, operation bool, apply func(storage.AgentTask) error) {
	h.eventMu.Lock()
	defer h.eventMu.Unlock()
	t, ok := h.ownedTask(ctx, c, taskID)
	if !ok || t.CompletedAt != nil || isOperation(t.Kind) != operation {
		return
	}
	if seq != nil && *seq <= t.LastEventSeq {
		return
	}
	if err := apply(t); err != nil {
		if !errors.Is(err, errInvalidEvent) {
			c.log.Warn().Err(err).Str("task_id", taskID).Msg("record task event")
			return
		}
		c.noisy.Warn().Err(err).Str("task_id", taskID).Msg("agent event refused")
	}
	if seq != nil {
		if err := h.db.Writer().SetAgentTaskEventSeq(ctx, t.ID, *seq); err != nil {
			c.log.Warn().Err(err).Str("task_id", taskID).Msg("record task event sequence")
		}
	}
}

// onResult applies a backup task's result once (see settle).
func (h *Hub) onResult(ctx context.Context, c *conn, res *protocol.TaskResult) {
	log := c.log.With().Str("task_id", res.TaskID).Str("run_id", res.RunID).Logger()
	noisy := c.noisy.With().Str("task_id", res.TaskID).Str("run_id", res.RunID).Logger()
	boundResult(&res.Summary, &res.Error)
	h.settle(ctx, c, res.TaskID, log, func(t storage.AgentTask) (bool, error) {
		if isOperation(t.Kind) {
			noisy.Warn().Str("kind", t.Kind).Msg("task result for an operation (restores and verifies end with operation_result); ignored")
			return false, nil
		}
		if t.RunID != res.RunID && res.RunID != "" {
			noisy.Warn().Msg("result names another run than its task; ignored")
			return false, nil
		}
		if h.cfg.Sink != nil {
			if err := h.cfg.Sink.Result(ctx, t, res); err != nil {
				return false, err
			}
		}
		return true, h.complete(ctx, t, res.Error, res.Status)
	})
}

// onOperationResult applies a restore's or verify's result once (see settle).
func (h *Hub) onOperationResult(ctx context.Context, c *conn, res *protocol.OperationResult) {
	log := c.log.With().Str("operation_id", res.OpID).Logger()
	noisy := c.noisy.With().Str("operation_id", res.OpID).Logger()
	boundResult(&res.Summary, &res.Error)
	h.settle(ctx, c, res.OpID, log, func(t storage.AgentTask) (bool, error) {
		if !isOperation(t.Kind) {
			noisy.Warn().Msg("operation result for a task that is not a restore or verify; ignored")
			return false, nil
		}
		if h.cfg.Operations != nil {
			if err := h.cfg.Operations.OperationResult(ctx, t, res); err != nil {
				return false, err
			}
		}
		return true, h.complete(ctx, t, res.Error, res.Status)
	})
}

// settle applies a result once: under resultMu, a completed task only gets its acknowledgement
// again; an open one is applied (through a sink, then completed) and then acknowledged. The agent
// re-sends until the acknowledgement arrives, so a crash anywhere here ends with the result
// applied once (the sinks' first-result-wins guard covers a crash between the sink and the
// completion). apply reports false for a result it refused (no acknowledgement).
func (h *Hub) settle(ctx context.Context, c *conn, taskID string, log zerolog.Logger, apply func(storage.AgentTask) (bool, error)) {
	h.resultMu.Lock()
	defer h.resultMu.Unlock()
	t, err := h.db.Reader().GetAgentTask(ctx, taskID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Nothing is owed for this id (the task was withdrawn); let the agent forget it.
		c.noisy.Info().Str("task_id", taskID).Msg("result for an unknown task; acknowledged without effect")
		_ = c.send(&protocol.TaskResultAck{TaskID: taskID})
		return
	case err != nil:
		log.Warn().Err(err).Msg("load agent task")
		return
	case t.AgentID != c.agentID:
		c.noisy.Warn().Str("task_id", taskID).Str("owner", t.AgentID).Msg("result from an agent that does not own the task; ignored")
		return
	}
	if t.CompletedAt == nil {
		ok, err := apply(t)
		if err != nil {
			log.Warn().Err(err).Msg("apply task result; the agent will re-send it")
			return
		}
		if !ok {
			return
		}
	}
	_ = c.send(&protocol.TaskResultAck{TaskID: taskID})
}

// complete closes a task with its outcome. Callers hold resultMu. The task row keeps the status
// only: the summary is stored with its run or operation, and a second copy here would double what
// one agent can make the Hub store.
func (h *Hub) complete(ctx context.Context, t storage.AgentTask, errText *string, status string) error {
	raw, _ := json.Marshal(struct {
		Status string `json:"status"`
	}{status})
	rs := string(raw)
	if _, err := h.db.Writer().CompleteAgentTask(ctx, t.ID, &rs, errText, h.clock.Now().Unix()); err != nil {
		return fmt.Errorf("complete agent task %s: %w", t.ID, err)
	}
	h.log.Info().Str("agent_id", t.AgentID).Str("task_id", t.ID).Str("kind", t.Kind).Str("status", status).Msg("agent task finished")
	return nil
}

// boundResult keeps what an agent reports with a result within bounds before anything stores
// it: a summary larger than MaxSummaryBytes is dropped (refusing the result would only make the
// agent re-send it forever) and the error text is cut to MaxEventMessage bytes.
func boundResult(summary *json.RawMessage, errText **string) {
	if len(*summary) > MaxSummaryBytes {
		*summary = nil
	}
	if e := *errText; e != nil && len(*e) > MaxEventMessage {
		cut := strings.ToValidUTF8((*e)[:MaxEventMessage], "")
		*errText = &cut
	}
}

// agentFailure reads how an agent says a task failed: the code from summary.error_code
// (agent_failed when it gives none) and its error text (fallback when it gives none).
func agentFailure(summary json.RawMessage, errText *string, fallback string) (code, msg string) {
	// A code that is not one (any text, any length) is not stored as one.
	code, _ = summaryErrorCode(summary)
	msg = fallback
	if code == "" {
		code = "agent_failed"
	}
	if errText != nil && *errText != "" {
		msg = *errText
	}
	return code, msg
}

// isOperation: tasks of this kind are operations (restores, verifies), reported with
// operation_event/operation_result and canceled with cancel_operation_task.
func isOperation(kind string) bool {
	return kind == storage.AgentTaskRestore || kind == storage.AgentTaskVerify
}
