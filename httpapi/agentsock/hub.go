// Package agentsock is the Hub's side of the agent protocol: enrollment, the agent WebSocket
// (one connection per agent, newest wins), heartbeats and read deadlines, and exactly-once task
// delivery: a task is stored before it is sent, re-sent until the agent acknowledges it, and its
// result is applied once, from the agent that owns it, then acknowledged so the agent can stop
// re-sending it.
package agentsock

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/storage"
)

// Defaults.
const (
	DefaultOutbox      = 512
	DefaultAckTimeout  = 30 * time.Second
	DefaultReadTimeout = 45 * time.Second // three default heartbeats
	// ReadLimit bounds one frame by default: snapshots are large and an artifact chunk is
	// 1 MiB + 17 bytes.
	ReadLimit = 32 << 20
	// SeenWriteInterval: last_seen_at is written at most this often per agent.
	SeenWriteInterval = 10 * time.Second
	// OnlineWindow: an agent heard from this recently (and not revoked) is online.
	OnlineWindow = 60 * time.Second
	writeTimeout = 10 * time.Second
	resendPage   = 100
	// DefaultAgentTimeout: a task whose agent the Hub has not heard from for this long is given
	// up (agent_timeout). An agent that is connected is never timed out, however slow.
	DefaultAgentTimeout = 24 * time.Hour
)

// TaskSink applies what agents report about their tasks. The run queue implements it; both
// methods run only for an open task owned by the reporting agent.
type TaskSink interface {
	// Event records a run_event (progress snapshots included).
	Event(ctx context.Context, t storage.AgentTask, ev *protocol.RunEvent) error
	// Result applies a terminal result. It must be idempotent (first result wins): after a Hub
	// crash between Result and the task's completion the agent re-sends the result.
	Result(ctx context.Context, t storage.AgentTask, res *protocol.TaskResult) error
}

// MessageBuilder turns a stored task into its wire message, resolving credentials at send time;
// agent_tasks.payload_json never holds them.
type MessageBuilder interface {
	Build(ctx context.Context, t storage.AgentTask) (protocol.Message, error)
}

// OperationSink applies what agents report about the restores they run (RestoreBridge); both
// methods run only for an open restore task owned by the reporting agent.
type OperationSink interface {
	OperationEvent(ctx context.Context, t storage.AgentTask, ev *protocol.OperationEvent) error
	// OperationResult must be idempotent (first result wins), like TaskSink.Result.
	OperationResult(ctx context.Context, t storage.AgentTask, res *protocol.OperationResult) error
}

// Notifier queues notifications for finished runs (engine/notify.Service). EnqueueFinished runs
// inside the write transaction that stores the run; Wake after the commit.
type Notifier interface {
	EnqueueFinished(ctx context.Context, q storage.Q, run storage.Run, jobSpecJSON string) (int, error)
	Wake()
}

// ConfigSource builds the snapshots an agent gets after hello and on sync-now. Nil sends none.
type ConfigSource interface {
	Secrets(ctx context.Context, agentID string) (*protocol.SecretsSnapshot, error)
	Config(ctx context.Context, agentID string) (*protocol.ConfigSnapshot, error)
}

// Config wires a Hub.
type Config struct {
	DB     *storage.DB
	Clock  clock.Clock
	Logger zerolog.Logger
	Sink   TaskSink
	// Operations receives restore events and results (nil: they wait on the agents, which re-send).
	Operations OperationSink
	// Notifier, when set, queues notifications for runs agents upload after running them offline.
	Notifier Notifier
	// Builder defaults to decoding payload_json as the wire message itself.
	Builder   MessageBuilder
	Snapshots ConfigSource
	// Keys gives encrypted jobs' tasks their public key (engine/agekeys.Keys); nil: none, and such
	// jobs fail on the agent.
	Keys Recipients
	// OnConnect runs after an agent's connection is registered (the run queue's Wake).
	OnConnect func(agentID string)
	// InsecureHTTP lets agents use plain HTTP/WS from other hosts (--insecure-http).
	InsecureHTTP bool
	Outbox       int
	AckTimeout   time.Duration
	ReadTimeout  time.Duration // until hello tells the agent's heartbeat
	// AgentTimeout is how long the Hub waits for an agent it does not hear from before it gives
	// up the agent's open tasks (default DefaultAgentTimeout).
	AgentTimeout time.Duration
	// ReadLimit bounds one frame after the hello (default ReadLimit). Tests lower it: decoding
	// a 32 MiB frame under the race detector takes most of a minute on a loaded machine.
	ReadLimit int64
}

// Hub owns the live agent connections.
type Hub struct {
	cfg   Config
	db    *storage.DB
	clock clock.Clock
	log   zerolog.Logger

	mu     sync.Mutex
	conns  map[string]*conn // agent id → its current connection
	seq    uint64           // connection tokens
	closed bool             // Close has begun: no new connections
	// ownStages: agents whose last hello said they send their runs' stage events themselves
	// (kept across reconnects: a late event of an old connection still counts).
	ownStages map[string]bool

	// connWG counts agent sockets being served and the goroutines each one starts, so that Close
	// can wait for all of them: none may outlive the Hub (and the database it writes to).
	connWG sync.WaitGroup

	pendingMu sync.Mutex
	pending   map[pendingKey]*pendingCall

	// resultMu serialises result handling, so a result re-sent on a new connection while the old
	// connection's copy is still being applied is recorded once.
	resultMu sync.Mutex
	// eventMu does the same for numbered events.
	eventMu sync.Mutex

	wake chan struct{} // ack-timeout loop

	started time.Time // when this Hub started: it cannot know about silence before that
}

// New builds a Hub. Run its loop with Run.
func New(cfg Config) *Hub {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Outbox <= 0 {
		cfg.Outbox = DefaultOutbox
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.ReadLimit <= 0 {
		cfg.ReadLimit = ReadLimit
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.Builder == nil {
		cfg.Builder = PayloadBuilder{}
	}
	if cfg.AgentTimeout <= 0 {
		cfg.AgentTimeout = DefaultAgentTimeout
	}
	return &Hub{
		cfg: cfg, db: cfg.DB, clock: cfg.Clock,
		log:       cfg.Logger.With().Str("component", "agentsock").Logger(),
		conns:     map[string]*conn{},
		ownStages: map[string]bool{},
		pending:   map[pendingKey]*pendingCall{},
		wake:      make(chan struct{}, 1),
		started:   cfg.Clock.Now(),
	}
}

// Connected reports whether the agent has a live connection.
func (h *Hub) Connected(agentID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.conns[agentID]
	return ok
}

// ConnectedCount is the number of live agent connections.
func (h *Hub) ConnectedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// sendsStageEvents reports whether the agent's last hello said it sends its runs' stage events.
func (h *Hub) sendsStageEvents(agentID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ownStages[agentID]
}

// connectedIDs lists the agents with a live connection.
func (h *Hub) connectedIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.conns))
	for id := range h.conns {
		ids = append(ids, id)
	}
	return ids
}

func (h *Hub) current(agentID string) *conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[agentID]
}

// enter counts one more agent socket being served; false once the Hub is closing.
func (h *Hub) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.connWG.Add(1)
	return true
}

// Close stops accepting agent sockets, closes the live ones (1001 going away) and returns once
// every goroutine serving them has ended. Run calls it when it stops; calling it again is
// harmless.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	live := make([]*conn, 0, len(h.conns))
	for _, c := range h.conns {
		live = append(live, c)
	}
	h.mu.Unlock()
	for _, c := range live {
		c.closeWith(int(websocket.StatusGoingAway), "hub shutting down")
	}
	h.connWG.Wait()
}

// Wait returns once no agent socket is being served; after Close, that is for good.
func (h *Hub) Wait() { h.connWG.Wait() }

// register makes c the agent's connection and closes the one it replaces with 4000 "replaced".
// A connection that arrives while the Hub is closing is closed at once.
func (h *Hub) register(c *conn) {
	h.mu.Lock()
	h.seq++
	c.token = h.seq
	old := h.conns[c.agentID]
	h.conns[c.agentID] = c
	closed := h.closed
	h.mu.Unlock()
	if closed {
		c.closeWith(int(websocket.StatusGoingAway), "hub shutting down")
	}
	if old != nil {
		h.log.Info().Str("agent_id", c.agentID).Msg("agent reconnected; closing its previous connection")
		old.closeWith(protocol.CloseReplaced, "replaced")
	}
}

// unregister forgets c unless a newer connection already replaced it, then fails c's pending
// requests. A replaced connection's teardown never touches its successor.
func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	if cur := h.conns[c.agentID]; cur != nil && cur.token == c.token {
		delete(h.conns, c.agentID)
	}
	h.mu.Unlock()
	h.failPending(c)
}

// Disconnect closes the agent's live connection with code and reason (revocation, rotation).
func (h *Hub) Disconnect(agentID string, code int, reason string) {
	if c := h.current(agentID); c != nil {
		c.closeWith(code, reason)
	}
}

func (h *Hub) kick() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}
