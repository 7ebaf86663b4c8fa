package agentsock_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestDisconnectReason: an agent that closes its socket is logged as such, not as a read deadline.
func TestDisconnectReason(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	logs := &syncWriter{w: &bytes.Buffer{}}
	th := serveTestHub(t, agentsock.New(agentsock.Config{DB: db, Logger: zerolog.New(logs)}), db)
	ws := dialAgent(t, th.url, insertAgentKey(t, th.db, "a1"))
	waitFor(t, "agent connected", func() bool { return th.hub.Connected("a1") })
	if err := ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "disconnect logged", func() bool {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		return strings.Contains(logs.w.String(), "agent disconnected")
	})
	logs.mu.Lock()
	out := logs.w.String()
	logs.mu.Unlock()
	if !strings.Contains(out, `"reason":"close 1000"`) {
		t.Fatalf("disconnect reason of a closed socket:\n%s", out)
	}
}
