package agentsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/storage"
)

// PayloadBuilder is the default MessageBuilder: payload_json is the wire message itself (a task,
// restore_task or verify_task without credentials).
type PayloadBuilder struct{}

func (PayloadBuilder) Build(_ context.Context, t storage.AgentTask) (protocol.Message, error) {
	var m protocol.Message
	switch t.Kind {
	case storage.AgentTaskRestore:
		m = &protocol.RestoreTask{}
	case storage.AgentTaskVerify:
		m = &protocol.VerifyTask{}
	default:
		m = &protocol.Task{}
	}
	if err := json.Unmarshal([]byte(t.PayloadJSON), m); err != nil {
		return nil, fmt.Errorf("decode payload of agent task %s: %w", t.ID, err)
	}
	return m, nil
}

// Dispatch stores t and, in the same transaction, whatever within writes (the run queue moves
// the run to running there), then sends t if the agent is connected. A task stored while the
// agent is away goes out when it connects. It returns whether the message was handed to a live
// connection.
func (h *Hub) Dispatch(ctx context.Context, t storage.AgentTask, within func(q storage.Q) error) (sent bool, err error) {
	now := h.clock.Now().Unix()
	if t.CreatedAt == 0 {
		t.CreatedAt = now
	}
	t.UpdatedAt = now
	if t.Kind == "" {
		t.Kind = storage.AgentTaskBackup
	}
	err = h.db.Write(ctx, func(q storage.Q) error {
		if within != nil {
			if err := within(q); err != nil {
				return err
			}
		}
		return q.InsertAgentTask(ctx, t)
	})
	if err != nil {
		return false, fmt.Errorf("dispatch task %s to agent %s: %w", t.ID, t.AgentID, err)
	}
	c := h.current(t.AgentID)
	if c == nil {
		return false, nil
	}
	if err := h.sendTask(ctx, c, t, false); err != nil {
		c.log.Warn().Err(err).Str("task_id", t.ID).Msg("send task; it will be re-sent")
		return false, nil
	}
	return true, nil
}

// sendTask builds and queues a task, records the send, and follows it with a cancel when the
// cancel intent is set (so a re-sent task never runs uncancelled).
func (h *Hub) sendTask(ctx context.Context, c *conn, t storage.AgentTask, wait bool) error {
	m, err := h.cfg.Builder.Build(ctx, t)
	if err != nil {
		return err
	}
	send := c.send
	if wait {
		send = c.sendWait
	}
	if err := h.db.Writer().MarkAgentTaskSent(ctx, t.ID, h.clock.Now().Unix()); err != nil {
		return err
	}
	h.kick()
	if isOperation(t.Kind) && h.cfg.Snapshots != nil {
		// The secrets snapshot goes first, every time: it carries the age identity of an encrypted
		// snapshot, and the socket's order makes it arrive before the restore or verify that needs
		// it (also when it is re-sent on a new connection, before hello's own snapshot).
		if err := h.sendSecrets(ctx, c, wait); err != nil {
			return fmt.Errorf("secrets snapshot for operation %s: %w", t.ID, err)
		}
	}
	if err := send(m); err != nil {
		return err
	}
	if t.CancelRequestedAt != nil {
		return send(cancelMessage(t))
	}
	return nil
}

func cancelMessage(t storage.AgentTask) protocol.Message {
	if isOperation(t.Kind) {
		return &protocol.CancelOperationTask{OpID: t.ID}
	}
	return &protocol.CancelRunTask{RunID: t.RunID}
}

// resendOpen re-sends every open task of the agent on a new connection, oldest first, acked or
// not: the agent answers a task it knows with its current state, so a re-send is always safe.
func (h *Hub) resendOpen(c *conn) {
	var afterCreated int64
	afterID := ""
	n := 0
	for c.ctx.Err() == nil {
		page, err := h.db.Reader().ListOpenAgentTasks(c.ctx, c.agentID, afterCreated, afterID, resendPage)
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("list open tasks to re-send")
			}
			return
		}
		for _, t := range page {
			if err := h.sendTask(c.ctx, c, t, true); err != nil {
				if c.ctx.Err() == nil {
					c.log.Warn().Err(err).Str("task_id", t.ID).Msg("re-send task")
				}
				continue
			}
			n++
		}
		if len(page) < resendPage {
			break
		}
		afterCreated, afterID = page[len(page)-1].CreatedAt, page[len(page)-1].ID
	}
	if n > 0 {
		c.log.Info().Int("tasks", n).Msg("re-sent open tasks")
	}
}

// CancelTask records the cancel intent of an open task and sends it if the agent is connected.
// The intent is replayed after every re-send, so an agent that is away gets it when it returns.
func (h *Hub) CancelTask(ctx context.Context, taskID string) error {
	open, err := h.db.Writer().RequestAgentTaskCancel(ctx, taskID, h.clock.Now().Unix())
	if err != nil || !open {
		return err
	}
	t, err := h.db.Reader().GetAgentTask(ctx, taskID)
	if err != nil {
		return err
	}
	if c := h.current(t.AgentID); c != nil {
		if err := c.send(cancelMessage(t)); err != nil {
			c.log.Debug().Err(err).Str("task_id", taskID).Msg("send cancel; it is replayed on reconnect")
		}
	}
	return nil
}

// ackLoopCap bounds the ACK-timeout loop's sleep so a clock step is noticed.
const ackLoopCap = 5 * time.Minute

// Run is the ACK-timeout loop: a task sent to a connected agent and not acknowledged within
// AckTimeout is sent again (the first copy may have died in a connection that has not noticed
// yet). It sleeps until the next such deadline, woken by every send and connection.
//
// When ctx ends it closes the Hub (Close): it returns once no agent socket is served any more.
func (h *Hub) Run(ctx context.Context) error {
	defer h.Close()
	t := h.clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.wake:
		case <-t.C():
		}
		next, err := h.resendUnacked(ctx)
		if err != nil && ctx.Err() == nil {
			h.log.Warn().Err(err).Msg("ack timeout pass")
			next = h.clock.Now().Add(5 * time.Second)
		}
		// Armed for the deadline itself, so the time the pass took (re-sends write to the
		// database) shortens the sleep instead of pushing the wake-up later.
		t.Reset(max(next.Sub(h.clock.Now()), 0))
	}
}

// resendUnacked re-sends the tasks whose ACK is overdue and returns when the next one is due (at
// most ackLoopCap after the pass began).
func (h *Hub) resendUnacked(ctx context.Context) (time.Time, error) {
	now := h.clock.Now()
	next := now.Add(ackLoopCap)
	connected := h.connectedIDs()
	if len(connected) == 0 {
		return next, nil // a connection wakes the loop
	}
	tasks, err := h.db.Reader().ListUnackedAgentTasks(ctx, connected, now.Unix(), 1000)
	if err != nil {
		return time.Time{}, err
	}
	timeout := h.cfg.AckTimeout
	for _, t := range tasks {
		c := h.current(t.AgentID)
		if c == nil || t.LastSentAt == nil {
			continue // re-sent on connect
		}
		due := time.Unix(*t.LastSentAt, 0).Add(timeout)
		if !due.After(now) {
			c.log.Info().Str("task_id", t.ID).Int64("sends", t.SendCount).Msg("task not acknowledged in time; sending it again")
			if err := h.sendTask(ctx, c, t, false); err != nil && !errors.Is(err, errNotConnected) {
				c.log.Warn().Err(err).Str("task_id", t.ID).Msg("re-send unacknowledged task")
			}
			due = now.Add(timeout)
		}
		if due.Before(next) {
			next = due
		}
	}
	return next, nil
}
