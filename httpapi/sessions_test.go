package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

type sessionItem struct {
	ID         string `json:"id"`
	CreatedAt  int64  `json:"created_at"`
	ExpiresAt  int64  `json:"expires_at"`
	LastSeenAt int64  `json:"last_seen_at"`
	ClientIP   string `json:"client_ip"`
	UserAgent  string `json:"user_agent"`
	Current    bool   `json:"current"`
}

func listSessions(t *testing.T, c *apitest.Client) []sessionItem {
	t.Helper()
	resp := c.Do(t, http.MethodGet, "/api/sessions", nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("list sessions: %s", resp)
	}
	var out struct {
		Items []sessionItem `json:"items"`
	}
	resp.Decode(t, &out)
	return out.Items
}

// TestSessionsCapListAndRevoke: one user holds at most MaxSessionsPerUser sessions (a new login
// evicts the oldest); the list shows them newest first with a public id that is neither the
// cookie nor what the database keys it by; revoking one ends it, revoking the current one logs
// out, and another user's or an unknown id is 404.
func TestSessionsCapListAndRevoke(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	ctx := context.Background()
	var clients []*apitest.Client
	for i := range httpapi.MaxSessionsPerUser + 2 {
		c := hub.Client(t)
		c.Header.Set("User-Agent", "browser-"+string(rune('a'+i))+"\u202Ex\ty")
		if i == 0 {
			c = hub.Login(t)
		} else {
			c.Login(t, apitest.Username, apitest.Password)
		}
		clients = append(clients, c)
		hub.Clock.Advance(time.Second)
	}
	var n int
	if err := hub.DB.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM sessions`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != httpapi.MaxSessionsPerUser {
		t.Fatalf("%d sessions stored, want %d", n, httpapi.MaxSessionsPerUser)
	}
	// The two oldest were evicted.
	for i := range 2 {
		if st, body := clients[i].Get(t, "/api/sessions"); st != http.StatusUnauthorized {
			t.Fatalf("evicted session %d still works: %d %v", i, st, body)
		}
	}
	newest := clients[len(clients)-1]
	items := listSessions(t, newest)
	if len(items) != httpapi.MaxSessionsPerUser || !items[0].Current || items[1].Current {
		t.Fatalf("list = %+v, want %d, newest (current) first", items, httpapi.MaxSessionsPerUser)
	}
	cookie := newest.SessionCookie().Value
	var dbID string
	if err := hub.DB.Reader().QueryRow(ctx, `SELECT id FROM sessions WHERE public_id = ?`, items[0].ID).Scan(&dbID); err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.ID == "" || it.ID == cookie || strings.Contains(dbID, it.ID) || strings.Contains(cookie, it.ID) {
			t.Fatalf("public id %q reveals the cookie or its hash", it.ID)
		}
		if it.ClientIP != "127.0.0.1" || it.ExpiresAt != it.CreatedAt+int64(httpapi.SessionTTL/time.Second) {
			t.Fatalf("session %+v", it)
		}
		if strings.ContainsAny(it.UserAgent, "\u202E\t") || !strings.HasPrefix(it.UserAgent, "browser-") {
			t.Fatalf("user agent %q not cleaned", it.UserAgent)
		}
	}
	raw := newest.Do(t, http.MethodGet, "/api/sessions", nil)
	if strings.Contains(string(raw.Body), cookie) || strings.Contains(string(raw.Body), dbID) || strings.Contains(string(raw.Body), newest.CSRF) {
		t.Fatal("the list carries a secret")
	}

	// last_seen_at moves with use, at most once a minute.
	hub.Clock.Advance(2 * time.Minute)
	if items := listSessions(t, newest); items[0].LastSeenAt != hub.Clock.Now().Unix() {
		t.Fatalf("last seen = %d, want now %d", items[0].LastSeenAt, hub.Clock.Now().Unix())
	}

	// Revoke another session: it stops working; CSRF is required.
	other := clients[5]
	victim := items[len(items)-1-3] // clients[5]: items are newest first, clients[2..11]
	if victim.Current {
		t.Fatal("picked the current session")
	}
	csrf := newest.CSRF
	newest.CSRF = ""
	if st, body := newest.Delete(t, "/api/sessions/"+victim.ID); st != http.StatusUnauthorized || body["error"] != "invalid_csrf" {
		t.Fatalf("revoke without CSRF: %d %v", st, body)
	}
	newest.CSRF = csrf
	if st, _ := other.Get(t, "/api/sessions"); st != http.StatusOK {
		t.Fatalf("session to revoke does not work before: %d", st)
	}
	if st, body := newest.Delete(t, "/api/sessions/"+victim.ID); st != http.StatusNoContent {
		t.Fatalf("revoke: %d %v", st, body)
	}
	if st, _ := other.Get(t, "/api/sessions"); st != http.StatusUnauthorized {
		t.Fatalf("revoked session still works: %d", st)
	}
	if st, body := newest.Delete(t, "/api/sessions/"+victim.ID); st != http.StatusNotFound || body["error"] != "session_not_found" {
		t.Fatalf("revoke again: %d %v", st, body)
	}
	if st, body := newest.Delete(t, "/api/sessions/"+strings.Repeat("0", 24)); st != http.StatusNotFound {
		t.Fatalf("unknown id: %d %v", st, body)
	}

	// Another user's session cannot be named.
	if _, err := hub.DB.Writer().Exec(ctx, `INSERT INTO users(id, username, password_hash, created_at, updated_at) VALUES (99, 'eve', 'x', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.DB.Writer().Exec(ctx, `INSERT INTO sessions(id, public_id, user_id, csrf_token, created_at, expires_at) VALUES ('h', 'evepub', 99, 'c', 1, ?)`, hub.Clock.Now().Unix()+3600); err != nil {
		t.Fatal(err)
	}
	if st, _ := newest.Delete(t, "/api/sessions/evepub"); st != http.StatusNotFound {
		t.Fatalf("revoke another user's session: %d", st)
	}
	for _, it := range listSessions(t, newest) {
		if it.ID == "evepub" {
			t.Fatal("another user's session is listed")
		}
	}

	// Revoking the current session logs out and clears the cookie.
	resp := newest.Do(t, http.MethodDelete, "/api/sessions/"+items[0].ID, nil)
	if resp.Status != http.StatusNoContent {
		t.Fatalf("revoke current: %s", resp)
	}
	cleared := false
	for _, ck := range resp.Cookies {
		cleared = cleared || (ck.Name == httpapi.SessionCookie && ck.MaxAge < 0)
	}
	if !cleared {
		t.Fatal("revoking the current session did not clear the cookie")
	}
	if st, _ := newest.Get(t, "/api/sessions"); st != http.StatusUnauthorized {
		t.Fatalf("after revoking itself: %d", st)
	}
}

// The User-Agent a browser sends is stored with the session: a huge one is cut to 200
// characters and bytes that are not UTF-8 become U+FFFD before they reach the database.
func TestSessionUserAgentIsBounded(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	hub.Login(t) // creates the account
	for _, tc := range []struct{ name, ua string }{
		{"Huge", strings.Repeat("x", 10<<10)},
		{"NotUTF8", "agent \xff\xfe end"},
	} {
		c := hub.Client(t)
		c.Header.Set("User-Agent", tc.ua)
		c.Login(t, apitest.Username, apitest.Password)
		var got string
		for _, s := range listSessions(t, c) {
			if s.Current {
				got = s.UserAgent
			}
		}
		if n := utf8.RuneCountInString(got); n == 0 || n > 200 || !utf8.ValidString(got) {
			t.Fatalf("%s: stored user agent %q (%d runes)", tc.name, got, n)
		}
		if tc.name == "NotUTF8" && !strings.Contains(got, "\uFFFD") {
			t.Fatalf("%s: stored user agent %q", tc.name, got)
		}
	}
}
