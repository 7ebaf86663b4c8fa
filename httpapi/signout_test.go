package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

// TestRunEventsSocketEndsWithItsCredentials: a run-events WebSocket authenticates at its
// handshake only, so it must close (1008) once the session or API token that opened it ends —
// by logout, revocation, a password reset, the user's deletion or eviction by newer logins — and
// stay open for everyone else. The run is finished, so each socket is held by the grace timer, which never fires here.
func TestRunEventsSocketEndsWithItsCredentials(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	rid := finishedRunWithEvents(t, jh, 1)
	admin := jh.c
	_, tok := admin.CreateToken(t, "watcher", httpapi.RoleViewer)

	type socket struct {
		name   string
		conn   *websocket.Conn
		closed chan error
	}
	dial := func(name string, c *apitest.Client) *socket {
		t.Helper()
		conn, st := wsDial(t, jh, c, rid, 0, jh.URL)
		if conn == nil {
			t.Fatalf("%s: dial = %d", name, st)
		}
		if got := fmt.Sprint(readSeqs(t, conn, 1)); got != "[1]" {
			t.Fatalf("%s: events %s", name, got)
		}
		s := &socket{name: name, conn: conn, closed: make(chan error, 1)}
		go func() {
			_, _, err := conn.Read(context.Background())
			s.closed <- err
		}()
		t.Cleanup(func() { conn.CloseNow() })
		return s
	}
	wantClosed := func(s *socket) {
		t.Helper()
		select {
		case err := <-s.closed:
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "signed out" {
				t.Fatalf("%s: %v, want a 1008 close saying signed out", s.name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: still open after its credentials ended", s.name)
		}
	}
	// The socket that must stay open is checked last: every sign-out before woke it too, and
	// closing it by mistake would have happened then, long before.
	wantOpen := func(s *socket) {
		t.Helper()
		select {
		case err := <-s.closed:
			t.Fatalf("%s: closed by someone else's sign-out: %v", s.name, err)
		default:
		}
	}

	bob := jh.AddUser(t, admin, "bob", httpapi.RoleOperator)
	carol := jh.AddUser(t, admin, "carol", httpapi.RoleViewer)
	dave := jh.AddUser(t, admin, "dave", httpapi.RoleViewer)
	adminSock := dial("admin session", admin)
	bobSock := dial("bob's session", bob)
	carolSock := dial("carol's session", carol)
	daveSock := dial("dave's session", dave)
	botSock := dial("api token", jh.BearerClient(t, tok))

	if st, body := bob.Post(t, "/api/auth/logout", nil); st != http.StatusNoContent {
		t.Fatalf("logout: %d %v", st, body)
	}
	wantClosed(bobSock)
	var tokens struct {
		Items []struct {
			ID int64 `json:"id"`
		} `json:"items"`
	}
	admin.Do(t, http.MethodGet, "/api/tokens", nil).Decode(t, &tokens)
	if len(tokens.Items) != 1 {
		t.Fatalf("tokens: %+v", tokens)
	}
	if r := admin.Do(t, http.MethodDelete, fmt.Sprintf("/api/tokens/%d", tokens.Items[0].ID), nil); r.Status != http.StatusNoContent {
		t.Fatalf("revoke token: %s", r)
	}
	wantClosed(botSock)
	if r := admin.Do(t, http.MethodPut, fmt.Sprint("/api/users/", userID(t, admin, "carol")), map[string]string{"password": "another long password"}); r.Status != http.StatusOK {
		t.Fatalf("reset carol's password: %s", r)
	}
	wantClosed(carolSock)
	if r := admin.Do(t, http.MethodDelete, fmt.Sprint("/api/users/", userID(t, admin, "dave")), nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete dave: %s", r)
	}
	wantClosed(daveSock)
	// Logins over the per-user limit evict the oldest session, and its socket with it.
	eveSock := dial("eve's oldest session", jh.AddUser(t, admin, "eve", httpapi.RoleViewer))
	for range httpapi.MaxSessionsPerUser {
		jh.Client(t).Login(t, "eve", apitest.Password)
	}
	wantClosed(eveSock)
	wantOpen(adminSock)
}

// TestRunEventsSocketEndsWithItsSession: a session, or an API token with an expiry, that expires
// while its socket is open ends the stream too, at the expiry by the Hub's clock, with nobody
// signing out.
func TestRunEventsSocketEndsWithItsSession(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"session", "token"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			// A grace period longer than the session, so that only the expiry can end this stream.
			jh := startJobsHub(t, apitest.WithConfig(func(cfg *httpapi.Config) { cfg.RunEventsGrace = 30 * 24 * time.Hour }))
			rid := finishedRunWithEvents(t, jh, 1)
			c := jh.c
			if kind == "token" {
				expires := jh.Clock.Now().Add(time.Hour).Unix()
				r := jh.c.Do(t, http.MethodPost, "/api/tokens", map[string]any{"name": "short", "role": httpapi.RoleViewer, "expires_at": expires})
				var out struct {
					Token string `json:"token"`
				}
				r.Decode(t, &out)
				c = jh.BearerClient(t, out.Token)
			}
			arms := jh.Clock.ArmCount()
			conn, st := wsDial(t, jh, c, rid, 0, jh.URL)
			if conn == nil {
				t.Fatalf("dial = %d", st)
			}
			defer conn.CloseNow()
			if got := fmt.Sprint(readSeqs(t, conn, 1)); got != "[1]" {
				t.Fatalf("events %s", got)
			}
			closed := make(chan error, 1)
			go func() {
				_, _, err := conn.Read(context.Background())
				closed <- err
			}()
			wctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if err := jh.Clock.WaitArmCount(wctx, arms+2); err != nil {
				t.Fatalf("waiting for the grace and expiry timers: %v", err)
			}
			d, ok := jh.Clock.NextDeadline()
			if limit := map[string]time.Duration{"session": 7 * 24 * time.Hour, "token": time.Hour}[kind]; !ok || d.Sub(jh.Clock.Now()) > limit {
				t.Fatalf("next deadline %v (ok %v), want the %s's expiry within %s", d, ok, kind, limit)
			}
			jh.Clock.Set(d)
			select {
			case err := <-closed:
				var ce websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "signed out" {
					t.Fatalf("at the expiry: %v, want a 1008 close saying signed out", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("still open after the expiry")
			}
		})
	}
}
