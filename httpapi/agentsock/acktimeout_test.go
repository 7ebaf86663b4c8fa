package agentsock_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// insertAgentKey stores an agent and returns its key.
func insertAgentKey(t testing.TB, db *storage.DB, id string) string {
	t.Helper()
	key := protocol.NewToken()
	hash, _ := protocol.HashToken(key)
	if err := db.Writer().InsertAgent(context.Background(), storage.Agent{ID: id, KeyHash: hash, CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	return key
}

// dialAgent opens a raw agent socket with key (an agent that never acknowledges anything).
func dialAgent(t testing.TB, url, key string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(context.Background(), "ws"+url[4:]+"/agent/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// readUntil reads frames until one of type typ arrives.
func readUntil(t testing.TB, c *websocket.Conn, typ string) protocol.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m, err := protocol.Decode(data); err == nil && m.MessageType() == typ {
			return m
		}
	}
}

// TestAckTimeoutResendNotStarvedByOfflineAgents: thousands of old unacknowledged tasks of an agent
// that is away do not keep the ack-timeout loop from re-sending a connected agent's task.
func TestAckTimeoutResendNotStarvedByOfflineAgents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	fake := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	h := agentsock.New(agentsock.Config{DB: db, Clock: fake, Logger: zerolog.New(zerolog.NewTestWriter(t)),
		AckTimeout: 30 * time.Second})
	th := serveTestHub(t, h, db)

	insertAgentKey(t, db, "away")
	old := fake.Now().Add(-time.Hour).Unix()
	if err := db.Write(ctx, func(q storage.Q) error {
		for i := range 1001 {
			id := fmt.Sprintf("away-%04d", i)
			if err := q.InsertAgentTask(ctx, storage.AgentTask{ID: id, AgentID: "away", RunID: id, Kind: storage.AgentTaskBackup,
				PayloadJSON: "{}", SendCount: 1, LastSentAt: &old, CreatedAt: old, UpdatedAt: old}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	key := insertAgentKey(t, db, "here")
	th.dispatch(t, "here", "here-task") // stored only: the agent is not connected yet
	ws := dialAgent(t, th.url, key)
	if m := readUntil(t, ws, protocol.TypeTask); m.(*protocol.Task).TaskID != "here-task" {
		t.Fatalf("first delivery: %+v", m)
	}
	waitFor(t, "first send recorded", func() bool { return th.task(t, "here-task").SendCount == 1 })
	// Only the ack-timeout loop sends it again: the agent never acknowledges.
	waitFor(t, "task re-sent after the ack timeout", func() bool {
		fake.Advance(time.Minute)
		return th.task(t, "here-task").SendCount >= 2
	})
	if tk := th.task(t, "away-0000"); tk.SendCount != 1 {
		t.Fatalf("a task of an agent that is away was re-sent: %d sends", tk.SendCount)
	}
}
