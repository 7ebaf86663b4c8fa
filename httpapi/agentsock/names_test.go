package agentsock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/names"
)

func helloFrame(t testing.TB, h protocol.Hello) []byte {
	t.Helper()
	b, err := protocol.Encode(&h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// closeStatus reads until the connection ends and returns its close code.
func closeStatus(t testing.TB, ws *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// TestHelloName: the name in a hello is a display name like any other. A valid one is stored
// trimmed; an invalid one, or a hello too large, makes the Hub close the socket with 4003 and
// store nothing of that hello (the name and capabilities stay what they were).
func TestHelloName(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ctx := context.Background()
	key := insertAgentKey(t, th.db, "a1")

	ws := dialAgent(t, th.url, key)
	if err := ws.Write(ctx, websocket.MessageText, helloFrame(t, protocol.Hello{Name: ptr("  nas-01  ")})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hello stored", func() bool {
		a, err := th.db.Reader().GetAgent(ctx, "a1")
		return err == nil && a.Name != nil && *a.Name == "nas-01"
	})
	ws.CloseNow()
	waitFor(t, "first connection gone", func() bool { return !th.hub.Connected("a1") })

	unchanged := func(t *testing.T) {
		t.Helper()
		a, err := th.db.Reader().GetAgent(ctx, "a1")
		if err != nil {
			t.Fatal(err)
		}
		if a.Name == nil || *a.Name != "nas-01" {
			t.Fatalf("name = %v, want the previous one kept", a.Name)
		}
		if a.CapabilitiesJSON == nil || len(*a.CapabilitiesJSON) > 1024 || strings.Contains(*a.CapabilitiesJSON, "evil") {
			t.Fatalf("capabilities replaced by the refused hello: %.200v", a.CapabilitiesJSON)
		}
	}
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   websocket.StatusCode
	}{
		{"RightToLeftOverride", [][]byte{helloFrame(t, protocol.Hello{Name: ptr("evil\u202Egpj.exe")})}, protocol.CloseInvalidHello},
		{"NewLine", [][]byte{helloFrame(t, protocol.Hello{Name: ptr("evil\nnas-02 online")})}, protocol.CloseInvalidHello},
		{"NUL", [][]byte{helloFrame(t, protocol.Hello{Name: ptr("evil\x00")})}, protocol.CloseInvalidHello},
		{"TooLong", [][]byte{helloFrame(t, protocol.Hello{Name: ptr("evil" + strings.Repeat("x", names.MaxLen))})}, protocol.CloseInvalidHello},
		// The read limit before the first frame is the hello's: a megabyte never gets buffered.
		{"MegabyteFirstFrame", [][]byte{helloFrame(t, protocol.Hello{Name: ptr("evil" + strings.Repeat("x", 1<<20))})}, websocket.StatusMessageTooBig},
		// A later hello is bounded by MaxHelloBytes too.
		{"LargeLaterHello", [][]byte{
			[]byte(`{"type":"ping","v":1}`),
			helloFrame(t, protocol.Hello{Name: ptr("ok"), Info: protocol.AgentInfo{Version: "evil" + strings.Repeat("x", protocol.MaxHelloBytes)}}),
		}, protocol.CloseInvalidHello},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := dialAgent(t, th.url, key)
			for _, f := range tc.frames {
				if err := ws.Write(ctx, websocket.MessageText, f); err != nil {
					t.Fatal(err)
				}
			}
			if got := closeStatus(t, ws); got != tc.want {
				t.Fatalf("close status = %d, want %d", got, tc.want)
			}
			waitFor(t, "connection gone", func() bool { return !th.hub.Connected("a1") })
			unchanged(t)
		})
	}
}

// TestHelloHugeHeartbeatIsClamped: a heartbeat_seconds too large for a time.Duration used to
// overflow into a read deadline in the past, dropping the agent at its next read. It is clamped
// to the documented maximum: the connection stays up and answers pings.
func TestHelloHugeHeartbeatIsClamped(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ctx := context.Background()
	for i, hb := range []float64{1e10, 1e300} {
		id := []string{"a1", "a2"}[i]
		ws := dialAgent(t, th.url, insertAgentKey(t, th.db, id))
		if err := ws.Write(ctx, websocket.MessageText, helloFrame(t, protocol.Hello{HeartbeatSeconds: &hb})); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "hello stored", func() bool {
			a, err := th.db.Reader().GetAgent(ctx, id)
			return err == nil && a.CapabilitiesJSON != nil
		})
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","v":1}`)); err != nil {
			t.Fatal(err)
		}
		readUntil(t, ws, protocol.TypePong)
		if !th.hub.Connected(id) {
			t.Fatalf("heartbeat_seconds %g: agent dropped", hb)
		}
	}
}

// TestAgentClampsItsHeartbeatAndChecksItsName: the agent library refuses a --name the Hub would
// refuse, before enrolling (the token is not spent), and never announces more than MaxHeartbeat.
func TestAgentClampsItsHeartbeatAndChecksItsName(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	ctx := context.Background()
	one := int64(1)
	tok := newEnrollToken(t, th.db, &one)
	_, err := client.New(ctx, client.Options{HubURL: th.url, EnrollToken: tok, Name: "a\u202Eb", DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("invalid --name: %v, want an error naming --name", err)
	}
	ra := startAgentWith(t, client.Options{HubURL: th.url, EnrollToken: tok, Name: " nas ", DataDir: t.TempDir(),
		Heartbeat: 1 << 62, Executor: newExecutor()})
	var hello struct {
		HeartbeatSeconds float64 `json:"heartbeat_seconds"`
	}
	waitFor(t, "hello stored", func() bool {
		a, err := th.db.Reader().GetAgent(ctx, ra.a.ID())
		return err == nil && a.CapabilitiesJSON != nil && json.Unmarshal([]byte(*a.CapabilitiesJSON), &hello) == nil
	})
	if hello.HeartbeatSeconds != protocol.MaxHeartbeat.Seconds() {
		t.Fatalf("announced heartbeat_seconds = %g, want %g", hello.HeartbeatSeconds, protocol.MaxHeartbeat.Seconds())
	}
	a, _ := th.db.Reader().GetAgent(ctx, ra.a.ID())
	if a.Name == nil || *a.Name != "nas" {
		t.Fatalf("name = %v, want nas", a.Name)
	}
}

// TestEnrollNameRules: enrollment applies the display-name rule; a refused name spends no use of
// the token.
func TestEnrollNameRules(t *testing.T) {
	t.Parallel()
	th := newTestHub(t, hubOpts{})
	one := int64(1)
	tok := newEnrollToken(t, th.db, &one)
	post := func(name string) (int, string, string) {
		body, _ := json.Marshal(map[string]string{"token": tok, "name": name})
		resp, err := http.Post(th.url+"/agent/enroll", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env struct {
			Error   string                  `json:"error"`
			Details struct{ Reason string } `json:"details"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&env)
		return resp.StatusCode, env.Error, env.Details.Reason
	}
	for _, tc := range []struct{ name, in, reason string }{
		{"FiveThousandBytes", strings.Repeat("x", 5000), "too_long"},
		{"NUL", "a\x00b", "invalid_characters"},
		{"CRLF", "a\r\nb", "invalid_characters"},
		{"Override", "a\u202Eb", "invalid_characters"},
	} {
		if code, e, r := post(tc.in); code != 400 || e != "invalid_name" || r != tc.reason {
			t.Fatalf("%s: %d %s %s, want 400 invalid_name %s", tc.name, code, e, r, tc.reason)
		}
	}
	if code, e, _ := post("  good name  "); code != 200 {
		t.Fatalf("valid name after refusals: %d %s (the refusals spent the token?)", code, e)
	}
}

func ptr[T any](v T) *T { return &v }
