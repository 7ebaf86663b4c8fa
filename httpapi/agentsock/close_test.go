package agentsock_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestStopEndsAgentSockets: when the Hub's loop stops, every agent socket is closed (1001) and
// the goroutine serving it has ended by the time Run returns, so nothing the Hub started outlives
// it, or writes to a database that is about to close.
func TestStopEndsAgentSockets(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	logs := &syncWriter{w: &bytes.Buffer{}}
	h := agentsock.New(agentsock.Config{DB: db, Logger: zerolog.New(logs)})
	th := serveTestHub(t, h, db)
	ws := dialAgent(t, th.url, insertAgentKey(t, db, "a1"))
	waitFor(t, "agent connected", func() bool { return h.Connected("a1") })
	ended := make(chan error, 1)
	go func() { // a well-behaved agent reads, and so answers the Hub's close frame
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				ended <- err
				return
			}
		}
	}()

	th.stop()
	out := logs.String()
	if !strings.Contains(out, "agent disconnected") {
		t.Fatalf("the socket was still being served after the Hub stopped; logs:\n%s", out)
	}
	if h.Connected("a1") {
		t.Fatal("agent still registered after the Hub stopped")
	}
	if err := <-ended; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("agent side ended with %v, want close 1001", err)
	}
}

// TestClosedHubRefusesSockets: once closing, the Hub answers a new agent socket with 503.
func TestClosedHubRefusesSockets(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	h := agentsock.New(agentsock.Config{DB: db, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	th := serveTestHub(t, h, db)
	key := insertAgentKey(t, db, "a1")
	h.Close()
	_, resp, err := websocket.Dial(context.Background(), "ws"+th.url[4:]+"/agent/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + key}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial a closed Hub: %v %v", resp, err)
	}
}
