package agentsock

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// errOutboxFull: the agent does not read fast enough; its connection is dropped and everything
// it owes is re-sent on the next one.
var errOutboxFull = errors.New("agent outbox full")

// errNotConnected: the agent has no live connection.
var errNotConnected = errors.New("agent not connected")

// conn is one agent connection: one reader (ServeWS's goroutine) and one writer draining out.
type conn struct {
	h       *Hub
	agentID string
	token   uint64
	ws      *websocket.Conn
	out     *outbox
	ctx     context.Context
	cancel  context.CancelCauseFunc
	log     zerolog.Logger
	// noisy logs what an agent can cause at will (results and events it has no business sending,
	// invalid ids): at most refusalBurst lines a minute per connection.
	noisy zerolog.Logger

	readTimeout atomic.Int64 // nanoseconds
	lastFrame   time.Time    // last frame heard; reader only
	lastSeen    time.Time    // last write of last_seen_at; reader only
	refused     bool         // the hello was refused: frames are dropped until the close; reader only
	helloSeen   bool         // the first frame was read and the read limit raised; reader only

	closeOnce sync.Once

	// cfgMu and secMu are held from building a snapshot until it is queued, so snapshots reach
	// the agent in the order they were built: one built before a secret or job changed can never
	// land after, and overwrite, the one built after the change.
	cfgMu     sync.Mutex
	cfgMarker string // last config snapshot id sent on this connection
	secMu     sync.Mutex
}

// ServeWS handles GET /agent/ws: it authenticates the Bearer key before upgrading, then runs the
// connection until it ends.
func (h *Hub) ServeWS(w http.ResponseWriter, r *http.Request) {
	if err := h.gate(r); err != nil {
		respond.Error(w, r, err)
		return
	}
	agent, err := h.authenticate(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if !h.enter() {
		respond.Error(w, r, respond.New(http.StatusServiceUnavailable, "hub_shutting_down", "the Hub is shutting down; connect again later"))
		return
	}
	defer h.connWG.Done()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		zerolog.Ctx(r.Context()).Debug().Err(err).Str("agent_id", agent.ID).Msg("agent websocket upgrade failed")
		return
	}
	// Until the first frame (the hello) the limit is the hello's: an agent cannot make the Hub
	// buffer 32 MiB before it said who it is. readLoop raises it after that frame.
	ws.SetReadLimit(protocol.MaxHelloBytes)
	// The request context ends with the Hub's connection context (shutdown), not with the handler.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
	stopWatch := context.AfterFunc(r.Context(), func() { cancel(context.Cause(r.Context())) })
	defer stopWatch()
	c := &conn{
		h: h, agentID: agent.ID, ws: ws, out: newOutbox(h.cfg.Outbox), ctx: ctx, cancel: cancel,
		log: h.log.With().Str("agent_id", agent.ID).Logger(),
	}
	c.noisy = c.log.Sample(&zerolog.BurstSampler{Burst: refusalBurst, Period: time.Minute})
	c.readTimeout.Store(int64(h.cfg.ReadTimeout))
	h.run(c)
}

func (h *Hub) run(c *conn) {
	defer c.cancel(nil)
	c.lastFrame = h.clock.Now()
	c.touchSeen(true)
	h.register(c)
	defer h.unregister(c)
	c.log.Info().Uint64("conn", c.token).Msg("agent connected")

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	h.connWG.Add(1) // within this socket's own count, so never after Close's Wait began
	go func() {
		defer h.connWG.Done()
		h.resendOpen(c)
	}()
	if h.cfg.OnConnect != nil {
		h.cfg.OnConnect(c.agentID)
	}
	h.kick()

	err := c.readLoop()
	c.cancel(err)
	<-writerDone
	c.closeWith(int(websocket.StatusNormalClosure), "")
	// Record when the agent was last heard, not now: a silent agent must turn offline on time.
	c.touchSeen(true)
	c.log.Info().Uint64("conn", c.token).Str("reason", describeEnd(err)).Msg("agent disconnected")
}

func describeEnd(err error) string {
	switch {
	case err == nil:
		return "closed"
	case errors.Is(err, context.DeadlineExceeded):
		return "read deadline: no frame within the heartbeat timeout"
	}
	if s := websocket.CloseStatus(err); s != -1 {
		return fmt.Sprintf("close %d", s)
	}
	return err.Error()
}

// readLoop reads until an error. Every frame restarts the read deadline, so a half-open TCP
// connection (a peer that vanished without FIN) is dropped after one timeout.
func (c *conn) readLoop() error {
	for {
		rctx, cancel := context.WithTimeout(c.ctx, time.Duration(c.readTimeout.Load()))
		typ, data, err := c.ws.Read(rctx)
		cancel()
		if err != nil {
			if c.ctx.Err() != nil {
				return context.Cause(c.ctx)
			}
			// rctx is canceled by now either way: only its deadline means silence.
			if errors.Is(rctx.Err(), context.DeadlineExceeded) {
				return context.DeadlineExceeded
			}
			return err
		}
		c.lastFrame = c.h.clock.Now()
		c.touchSeen(false)
		if !c.helloSeen {
			c.helloSeen = true
			c.ws.SetReadLimit(c.h.cfg.ReadLimit)
		}
		if c.refused {
			continue
		}
		if typ != websocket.MessageText {
			continue // binary frames carry artifact chunks, not used by this Hub yet
		}
		m, err := protocol.Decode(data)
		if err != nil {
			c.log.Debug().Err(err).Msg("dropping agent frame")
			continue
		}
		c.h.handle(c, m, data)
	}
}

func (c *conn) writeLoop() {
	for {
		b, err := c.out.pop(c.ctx)
		if err != nil {
			return
		}
		wctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
		err = c.ws.Write(wctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			c.cancel(fmt.Errorf("write to agent: %w", err))
			return
		}
	}
}

// send queues m without waiting. A full outbox drops the connection (the agent is not reading),
// which is safe: whatever it was owed is re-sent when it reconnects.
func (c *conn) send(m protocol.Message) error {
	b, err := protocol.Encode(m)
	if err != nil {
		return err
	}
	if c.ctx.Err() != nil {
		return errNotConnected
	}
	if !c.out.push(b) {
		c.cancel(errOutboxFull)
		return errOutboxFull
	}
	return nil
}

// sendWait queues m, waiting for room while the connection lives (bulk re-sends).
func (c *conn) sendWait(m protocol.Message) error {
	b, err := protocol.Encode(m)
	if err != nil {
		return err
	}
	if c.out.pushWait(c.ctx, b) != nil {
		return errNotConnected
	}
	return nil
}

// closeWith ends the connection with a close code; only the first call counts.
func (c *conn) closeWith(code int, reason string) {
	c.closeOnce.Do(func() {
		// run calls closeWith before it returns, so this Add happens while the socket is counted.
		c.h.connWG.Add(1)
		go func() {
			defer c.h.connWG.Done()
			// Close waits for the peer's close frame (bounded by the library); never block callers.
			_ = c.ws.Close(websocket.StatusCode(code), reason)
			c.cancel(fmt.Errorf("closed by hub: %d %s", code, reason))
		}()
	})
}

// touchSeen writes the time of the last frame to last_seen_at, at most every
// SeenWriteInterval unless force is set (connect and disconnect).
func (c *conn) touchSeen(force bool) {
	now := c.lastFrame
	if !force && now.Sub(c.lastSeen) < SeenWriteInterval {
		return
	}
	c.lastSeen = now
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
	defer cancel()
	if err := c.h.db.Writer().TouchAgentSeen(ctx, c.agentID, now.Unix()); err != nil {
		c.log.Warn().Err(err).Msg("record agent last seen")
	}
}

func (h *Hub) authenticate(r *http.Request) (storage.Agent, error) {
	const prefix = "Bearer "
	authz := r.Header.Get("Authorization")
	if len(authz) <= len(prefix) || authz[:len(prefix)] != prefix {
		return storage.Agent{}, respond.Unauthorized("unauthorized", "agent key required")
	}
	hash, ok := protocol.HashToken(authz[len(prefix):])
	if !ok {
		return storage.Agent{}, respond.Unauthorized("unauthorized", "invalid agent key")
	}
	a, err := h.db.Reader().GetAgentByKeyHash(r.Context(), hash)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Agent{}, respond.Unauthorized("unauthorized", "invalid agent key")
	}
	if err != nil {
		return storage.Agent{}, err
	}
	if a.RevokedAt != nil {
		return storage.Agent{}, respond.Unauthorized("revoked", "agent is revoked")
	}
	return a, nil
}
