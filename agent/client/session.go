package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/bastion-backup/bastion/agent/protocol"
)

// readLimit matches the Hub's: snapshots are large.
const readLimit = 32 << 20

var (
	errPongTimeout = errors.New("no pong within the pong timeout")
	errOutboxFull  = errors.New("outbox full")
)

// session is one connection to the Hub.
type session struct {
	ws     *websocket.Conn
	out    chan []byte
	ctx    context.Context
	cancel context.CancelCauseFunc
	// lastPong is the clock reading (unix ns) of the connect or of the last pong.
	lastPong atomic.Int64
}

// send queues m without waiting; a full outbox ends the connection (the Hub is not reading), and
// everything owed to the Hub is sent again on the next one.
func (s *session) send(m protocol.Message) error {
	b, err := protocol.Encode(m)
	if err != nil {
		return err
	}
	if s.ctx.Err() != nil {
		return context.Cause(s.ctx)
	}
	select {
	case s.out <- b:
		return nil
	default:
		s.cancel(errOutboxFull)
		return errOutboxFull
	}
}

// connectAndServe runs one connection. It returns how long the connection was up and why it
// ended.
func (a *Agent) connectAndServe(ctx context.Context) (time.Duration, error) {
	u, err := protocol.WebSocketURL(a.id.HubURL)
	if err != nil {
		return 0, err
	}
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	ws, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{
		HTTPClient:      a.o.HTTPClient,
		HTTPHeader:      http.Header{"Authorization": {"Bearer " + a.id.AgentKey}},
		CompressionMode: websocket.CompressionDisabled,
	})
	dcancel()
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return 0, unauthorized(resp)
		}
		return 0, fmt.Errorf("connect to the hub: %w", err)
	}
	ws.SetReadLimit(readLimit)
	start := a.clock.Now()
	sctx, cancel := context.WithCancelCause(ctx)
	s := &session{ws: ws, out: make(chan []byte, a.o.OutboxSize), ctx: sctx, cancel: cancel}
	s.lastPong.Store(start.UnixNano())

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		a.writeLoop(s)
	}()

	// hello, then what the Hub may not have: the events of unfinished tasks, then unacknowledged
	// results (a task's events precede its result).
	_ = s.send(a.hello())
	a.mu.Lock()
	a.sess = s
	a.resendLogsLocked(s)
	a.mu.Unlock()
	for _, r := range a.store.unackedResults() {
		if s.send(r) != nil {
			break
		}
	}
	a.log.Info().Msg("connected to the hub")
	uploadDone := make(chan struct{})
	go func() {
		defer close(uploadDone)
		a.uploadOffline(sctx)
	}()

	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		a.heartbeat(s)
	}()
	err = a.readLoop(s)
	cancel(err)

	a.mu.Lock()
	if a.sess == s {
		a.sess = nil
	}
	a.mu.Unlock()
	select { // disconnected: the offline scheduler takes over
	case a.schedWake <- struct{}{}:
	default:
	}
	<-hbDone
	<-writerDone
	<-uploadDone
	_ = ws.CloseNow()
	up := a.clock.Now().Sub(start)
	if cause := context.Cause(sctx); websocket.CloseStatus(err) == -1 && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	return up, closeError(err)
}

// closeError turns the Hub's deliberate close codes into fatal errors.
func closeError(err error) error {
	switch websocket.CloseStatus(err) {
	case protocol.CloseRevoked:
		return ErrRevoked
	case protocol.CloseKeyRotated:
		return ErrKeyRotated
	case protocol.CloseInvalidHello:
		return fmt.Errorf("the hub refused this agent's hello (check --name): %w", err)
	case protocol.CloseReplaced:
		return fmt.Errorf("the hub closed this connection because another connection of this agent replaced it: %w", err)
	}
	return err
}

func unauthorized(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var env struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &env)
	if env.Error == "revoked" {
		return ErrRevoked
	}
	return ErrUnknownKey
}

func (a *Agent) readLoop(s *session) error {
	for {
		typ, data, err := s.ws.Read(s.ctx)
		if err != nil {
			if websocket.CloseStatus(err) != -1 {
				return err // the Hub's own reason comes first (revoked, key rotated)
			}
			if c := context.Cause(s.ctx); c != nil {
				return c
			}
			return err
		}
		// Any frame proves the link is alive, not only a pong: a Hub busy sending a large snapshot
		// may answer a ping late.
		s.lastPong.Store(a.clock.Now().UnixNano())
		if typ != websocket.MessageText {
			continue
		}
		m, err := protocol.Decode(data)
		if err != nil {
			a.log.Debug().Err(err).Msg("dropping hub frame")
			continue
		}
		a.handle(s, m)
	}
}

func (a *Agent) writeLoop(s *session) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case b := <-s.out:
			wctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			err := s.ws.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				s.cancel(fmt.Errorf("write to the hub: %w", err))
				return
			}
		}
	}
}

// heartbeat pings every interval, first at once. No pong for three intervals ends the session:
// the link is dead even if TCP has not noticed (a black hole never delivers a FIN).
func (a *Agent) heartbeat(s *session) {
	iv := a.o.Heartbeat
	timeout := 3 * iv
	t := a.clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C():
		}
		since := a.clock.Now().Sub(time.Unix(0, s.lastPong.Load()))
		if since > timeout {
			a.log.Warn().Dur("since_last_pong", since).Msg("hub stopped answering pings; reconnecting")
			s.cancel(errPongTimeout)
			return
		}
		if err := s.send(&protocol.Ping{}); err != nil {
			return
		}
		t.Reset(iv)
	}
}

func (a *Agent) handle(s *session, m protocol.Message) {
	switch m := m.(type) {
	case *protocol.Pong:
	case *protocol.Ping:
		_ = s.send(&protocol.Pong{})
	case *protocol.Task:
		a.onTask(s, m)
	case *protocol.CancelRunTask:
		a.cancelTask(m.RunID)
	case *protocol.RestoreTask:
		a.onRestoreTask(s, m)
	case *protocol.VerifyTask:
		a.onVerifyTask(s, m)
	case *protocol.EntriesList:
		go func() { _ = s.send(a.entriesList(s.ctx, m)) }()
	case *protocol.CancelOperationTask:
		a.cancelTask(m.OpID)
	case *protocol.SnapshotDeleteTask:
		go func() { _ = s.send(a.snapshotDelete(s.ctx, &m.Task)) }()
	case *protocol.SnapshotCleanupTask:
		go func() { _ = s.send(a.snapshotCleanup(s.ctx, &m.Task)) }()
	case *protocol.WebdavList:
		go func() { _ = s.send(a.webdavList(s.ctx, m)) }()
	case *protocol.TaskResultAck:
		a.onResultAck(m.TaskID)
	case *protocol.ConfigSnapshot:
		a.onConfig(s, m)
	case *protocol.SecretsSnapshot:
		a.onSecrets(m)
	case *protocol.FsList:
		go func() { _ = s.send(a.fsList(m)) }()
	default:
		a.log.Debug().Str("type", m.MessageType()).Msg("ignoring hub message")
	}
}

// onConfig saves a config snapshot for this agent and acknowledges it only once saved (the
// original acknowledged even a failed write). A snapshot for another node is ignored, unacked.
func (a *Agent) onConfig(s *session, m *protocol.ConfigSnapshot) {
	if a.o.Managed == nil || m.NodeID != a.id.AgentID {
		return
	}
	if err := a.o.Managed.SaveConfig(m); err != nil {
		a.log.Error().Err(err).Msg("could not save the config snapshot; not acknowledging it")
		return
	}
	_ = s.send(&protocol.ConfigAck{SnapshotID: m.SnapshotID})
	select { // the offline scheduler re-reads the jobs
	case a.schedWake <- struct{}{}:
	default:
	}
}

func (a *Agent) onSecrets(m *protocol.SecretsSnapshot) {
	if a.o.Managed == nil || m.NodeID != a.id.AgentID {
		return
	}
	if err := a.o.Managed.SaveSecrets(m); err != nil {
		a.log.Error().Err(err).Msg("could not save the secrets snapshot")
	}
}
