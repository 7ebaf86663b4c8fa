package agentsock

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bastion-backup/bastion/agent/protocol"
)

// ErrAgentOffline: the agent has no live connection, or lost it while a request was pending.
var ErrAgentOffline = errors.New("agent_offline")

// ErrAgentDisconnected (an ErrAgentOffline) is a connection that ended while a request on it was
// pending: the request may or may not have reached the agent.
var ErrAgentDisconnected = fmt.Errorf("%w: agent disconnected", ErrAgentOffline)

// RPCTimeout bounds fs_list and webdav_list.
const RPCTimeout = 5 * time.Second

type pendingKey struct{ agentID, requestID string }

type pendingCall struct {
	c     *conn
	reply chan protocol.Message // capacity 1
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// errBusy: a request with the same key is already waiting for its reply.
var errBusy = errors.New("the same request is already waiting for the agent")

// callKey sends m and waits (at most timeout) for the reply the agent files under key: a request
// id, or a run id for snapshot deletes, whose replies carry no request id.
func (h *Hub) callKey(ctx context.Context, agentID, key string, timeout time.Duration, m protocol.Message) (protocol.Message, error) {
	c := h.current(agentID)
	if c == nil {
		return nil, ErrAgentOffline
	}
	pk := pendingKey{agentID, key}
	p := &pendingCall{c: c, reply: make(chan protocol.Message, 1)}
	h.pendingMu.Lock()
	if _, taken := h.pending[pk]; taken {
		h.pendingMu.Unlock()
		return nil, errBusy
	}
	h.pending[pk] = p
	h.pendingMu.Unlock()
	defer func() {
		h.pendingMu.Lock()
		if h.pending[pk] == p {
			delete(h.pending, pk)
		}
		h.pendingMu.Unlock()
	}()
	if err := c.send(m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAgentDisconnected, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case m := <-p.reply:
		if m == nil {
			return nil, ErrAgentDisconnected
		}
		return m, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("agent %s did not answer in time: %w", agentID, ctx.Err())
	}
}

// errWrongReply: the agent answered a request with a message of another type.
var errWrongReply = errors.New("the agent answered with an unexpected message")

// callFor is callKey for a request answered by one message type R: a reply of any other type is
// an error wrapping errWrongReply.
func callFor[R protocol.Message](ctx context.Context, h *Hub, agentID, key string, timeout time.Duration, m protocol.Message) (R, error) {
	var zero R
	reply, err := h.callKey(ctx, agentID, key, timeout, m)
	if err != nil {
		return zero, err
	}
	res, ok := reply.(R)
	if !ok {
		return zero, fmt.Errorf("agent %s answered %s with %s: %w", agentID, m.MessageType(), reply.MessageType(), errWrongReply)
	}
	return res, nil
}

// resolvePending hands a reply to its waiting caller; a late or unknown reply is dropped.
func (h *Hub) resolvePending(c *conn, requestID string, m protocol.Message) {
	h.pendingMu.Lock()
	p := h.pending[pendingKey{c.agentID, requestID}]
	if p != nil && p.c == c {
		delete(h.pending, pendingKey{c.agentID, requestID})
	} else {
		p = nil
	}
	h.pendingMu.Unlock()
	if p != nil {
		p.reply <- m
	}
}

// failPending answers every request pending on c with "agent disconnected".
func (h *Hub) failPending(c *conn) {
	h.pendingMu.Lock()
	var fail []*pendingCall
	for k, p := range h.pending {
		if p.c == c {
			fail = append(fail, p)
			delete(h.pending, k)
		}
	}
	h.pendingMu.Unlock()
	for _, p := range fail {
		p.reply <- nil
	}
}

// FsList asks the agent to list a directory.
func (h *Hub) FsList(ctx context.Context, agentID string, req protocol.FsList) (*protocol.FsListResult, error) {
	req.RequestID = newRequestID()
	return callFor[*protocol.FsListResult](ctx, h, agentID, req.RequestID, RPCTimeout, &req)
}

// WebdavList asks the agent to list a WebDAV collection with its own credential.
func (h *Hub) WebdavList(ctx context.Context, agentID string, req protocol.WebdavList) (*protocol.WebdavListResult, error) {
	req.RequestID = newRequestID()
	return callFor[*protocol.WebdavListResult](ctx, h, agentID, req.RequestID, RPCTimeout, &req)
}

// EntriesTimeout bounds entries_list: the agent may first copy a large index into its cache and
// then scans it whole for every page.
const EntriesTimeout = 30 * time.Second

// EntriesList asks the agent for one page of a snapshot's entries index. ErrAgentOffline when the
// agent is not connected, ErrAgentDisconnected when it went away before answering, a deadline
// error after EntriesTimeout.
func (h *Hub) EntriesList(ctx context.Context, agentID string, req protocol.EntriesList) (*protocol.EntriesListResult, error) {
	req.RequestID = newRequestID()
	return callFor[*protocol.EntriesListResult](ctx, h, agentID, req.RequestID, EntriesTimeout, &req)
}

// Supports reports whether the agent's last hello listed control (protocol.ControlEntriesList,
// protocol.ControlVerify): an agent that does not know a Go extension drops it unanswered.
func (h *Hub) Supports(ctx context.Context, agentID, control string) (bool, error) {
	a, err := h.db.Reader().GetAgent(ctx, agentID)
	if err != nil {
		return false, fmt.Errorf("read capabilities of agent %s: %w", agentID, err)
	}
	if a.CapabilitiesJSON == nil {
		return false, nil
	}
	var hello protocol.Hello
	if err := json.Unmarshal([]byte(*a.CapabilitiesJSON), &hello); err != nil {
		return false, nil // an unreadable hello promises nothing
	}
	return slices.Contains(hello.Capabilities.Control, control), nil
}
