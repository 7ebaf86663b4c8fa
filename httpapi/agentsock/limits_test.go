package agentsock_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestPendingRequestFailsWhenTheAgentGoes: a request waiting for the agent's answer fails at once
// with ErrAgentDisconnected when the agent's connection ends, instead of running out its timeout.
func TestPendingRequestFailsWhenTheAgentGoes(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ws := dialAgent(t, th.url, insertAgentKey(t, th.db, "a1"))
	waitFor(t, "agent connected", func() bool { return th.hub.Connected("a1") })
	errc := make(chan error, 1)
	go func() {
		_, err := th.hub.FsList(context.Background(), "a1", protocol.FsList{Path: "/"})
		errc <- err
	}()
	readUntil(t, ws, protocol.TypeFsList) // the request is on the wire, waiting for its answer
	ws.CloseNow()
	if err := <-errc; !errors.Is(err, agentsock.ErrAgentDisconnected) {
		t.Fatalf("fs_list whose agent went away: %v, want ErrAgentDisconnected (not a timeout)", err)
	}
}

// TestDefaultReadLimit: without a ReadLimit the Hub reads frames far larger than an artifact
// chunk (1 MiB + 17 bytes). The full 32 MiB is not sent: decoding it under the race detector
// takes most of a minute on a loaded machine.
func TestDefaultReadLimit(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	th := serveTestHub(t, agentsock.New(agentsock.Config{DB: db, Logger: zerolog.Nop()}), db)
	ws := dialAgent(t, th.url, insertAgentKey(t, th.db, "a1"))
	waitFor(t, "agent connected", func() bool { return th.hub.Connected("a1") })
	ctx := context.Background()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","v":1}`)); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ws, protocol.TypePong)
	head := `{"type":"ping","v":1,"pad":"`
	big := head + strings.Repeat("x", 4<<20-len(head)-2) + `"}`
	if err := ws.Write(ctx, websocket.MessageText, []byte(big)); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ws, protocol.TypePong)
	if !th.hub.Connected("a1") {
		t.Fatal("a 4 MiB frame ended the connection")
	}
}

// TestReadLimit: after the first frame, a frame of ReadLimit bytes is read; a larger one ends the connection with close
// code 1009 (message too big), and the Hub forgets the connection and logs why.
func TestReadLimit(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	logs := &syncWriter{w: &bytes.Buffer{}}
	const limit = 256 << 10 // the mechanism, not the default's size (TestDefaultReadLimit)
	th := serveTestHub(t, agentsock.New(agentsock.Config{DB: db, Logger: zerolog.New(logs), ReadLimit: limit}), db)
	ws := dialAgent(t, th.url, insertAgentKey(t, th.db, "a1"))
	ws.SetReadLimit(1 << 20)
	waitFor(t, "agent connected", func() bool { return th.hub.Connected("a1") })
	ctx := context.Background()
	frame := func(size int) []byte {
		head := `{"type":"ping","v":1,"pad":"` // unknown fields are ignored
		return []byte(head + strings.Repeat("x", size-len(head)-2) + `"}`)
	}

	// The first frame (the hello) has a limit of its own (TestHelloName); later ones have ReadLimit.
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","v":1}`)); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ws, protocol.TypePong)
	if err := ws.Write(ctx, websocket.MessageText, frame(limit)); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ws, protocol.TypePong) // read and answered

	if err := ws.Write(ctx, websocket.MessageText, frame(limit+1)); err != nil {
		t.Fatal(err)
	}
	_, _, err := ws.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("after an oversized frame: %v, want close 1009", err)
	}
	waitFor(t, "connection forgotten", func() bool { return !th.hub.Connected("a1") })
	waitFor(t, "disconnect logged", func() bool { return strings.Contains(logs.String(), "agent disconnected") })
	out := logs.String()
	if !strings.Contains(out, "message too big") {
		t.Fatalf("the disconnect does not say why:\n%s", out)
	}
}

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
	waitFor(t, "disconnect logged", func() bool { return strings.Contains(logs.String(), "agent disconnected") })
	out := logs.String()
	if !strings.Contains(out, `"reason":"close 1000"`) {
		t.Fatalf("disconnect reason of a closed socket:\n%s", out)
	}
}
