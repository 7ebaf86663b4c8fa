package httpapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

type tokenItem struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Role       string `json:"role"`
	CreatedAt  int64  `json:"created_at"`
	ExpiresAt  *int64 `json:"expires_at"`
	LastUsedAt *int64 `json:"last_used_at"`
	CreatedBy  string `json:"created_by"`
	Expired    bool   `json:"expired"`
}

func listTokens(t *testing.T, c *apitest.Client) []tokenItem {
	t.Helper()
	resp := c.Do(t, http.MethodGet, "/api/tokens", nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("list tokens: %d %s", resp.Status, resp.Body)
	}
	if strings.Contains(string(resp.Body), "bst_") || strings.Contains(string(resp.Body), "hash") {
		t.Fatalf("token list shows a token or its hash: %s", resp.Body)
	}
	var out struct{ Items []tokenItem }
	resp.Decode(t, &out)
	return out.Items
}

func wantStatus(t *testing.T, resp *apitest.Response, status int, code string) {
	t.Helper()
	if resp.Status != status || (code != "" && resp.ErrorCode() != code) {
		t.Fatalf("got %d %s, want %d %s", resp.Status, resp.Body, status, code)
	}
}

func userCount(t *testing.T, hub *apitest.Hub) int {
	t.Helper()
	n, err := hub.DB.Reader().CountUsers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAPITokenLifecycle(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)

	id, tok := admin.CreateToken(t, "ci", httpapi.RoleAdmin)
	if !strings.HasPrefix(tok, httpapi.APITokenPrefix) || len(tok) < 40 {
		t.Fatalf("token = %q", tok)
	}
	items := listTokens(t, admin)
	if len(items) != 1 || items[0].ID != id || items[0].Name != "ci" || items[0].Role != "admin" ||
		items[0].CreatedBy != apitest.Username || items[0].LastUsedAt != nil || items[0].ExpiresAt != nil {
		t.Fatalf("tokens = %+v", items)
	}

	// A bearer token works without a cookie or a CSRF token, on mutations too, and acts as its
	// creator.
	bot := hub.BearerClient(t, tok)
	wantStatus(t, bot.Do(t, http.MethodPost, "/api/users", map[string]string{"username": "made-by-bot", "password": apitest.Password, "role": "viewer"}), http.StatusCreated, "")
	created := hub.Clock.Now().Unix()
	if got := listTokens(t, admin)[0].LastUsedAt; got == nil || *got != created {
		t.Fatalf("last_used_at = %v, want %d", got, created)
	}
	// last_used_at is written at most once a minute.
	hub.Clock.Advance(30 * time.Second)
	wantStatus(t, bot.Do(t, http.MethodGet, "/api/users", nil), http.StatusOK, "")
	if got := listTokens(t, admin)[0].LastUsedAt; *got != created {
		t.Fatalf("last_used_at moved within the minute: %d", *got)
	}
	hub.Clock.Advance(31 * time.Second)
	wantStatus(t, bot.Do(t, http.MethodGet, "/api/users", nil), http.StatusOK, "")
	if got := listTokens(t, admin)[0].LastUsedAt; *got != hub.Clock.Now().Unix() {
		t.Fatalf("last_used_at = %d, want %d", *got, hub.Clock.Now().Unix())
	}

	// A wrong token is refused, even next to a valid session cookie.
	for _, bad := range []string{tok + "x", "bst_" + strings.Repeat("A", 43), "not-a-token", ""} {
		admin.Header.Set("Authorization", "Bearer "+bad)
		wantStatus(t, admin.Do(t, http.MethodGet, "/api/users", nil), http.StatusUnauthorized, "invalid_token")
	}
	admin.Header.Del("Authorization")
	// Other schemes (a proxy's Basic credentials) leave the session in charge.
	admin.Header.Set("Authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")
	wantStatus(t, admin.Do(t, http.MethodGet, "/api/users", nil), http.StatusOK, "")
	admin.Header.Del("Authorization")

	// Revoked: 401 at once.
	wantStatus(t, admin.Do(t, http.MethodDelete, "/api/tokens/"+id64(id), nil), http.StatusNoContent, "")
	wantStatus(t, bot.Do(t, http.MethodGet, "/api/users", nil), http.StatusUnauthorized, "invalid_token")
	wantStatus(t, admin.Do(t, http.MethodDelete, "/api/tokens/"+id64(id), nil), http.StatusNotFound, "token_not_found")
	if len(listTokens(t, admin)) != 0 {
		t.Fatal("revoked token still listed")
	}
}

func TestAPITokenExpiresAndBadRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)
	now := hub.Clock.Now().Unix()
	for _, body := range []map[string]any{
		{"name": "", "role": "viewer"},
		{"name": "x", "role": "root"},
		{"name": "x\ty", "role": "viewer"},
		{"name": strings.Repeat("n", 101), "role": "viewer"},
		{"name": "x", "role": "viewer", "expires_at": now},
	} {
		resp := admin.Do(t, http.MethodPost, "/api/tokens", body)
		if resp.Status != http.StatusBadRequest {
			t.Fatalf("%v: %d %s", body, resp.Status, resp.Body)
		}
	}
	if len(listTokens(t, admin)) != 0 {
		t.Fatal("a refused request created a token")
	}
	resp := admin.Do(t, http.MethodPost, "/api/tokens", map[string]any{"name": "short", "role": "viewer", "expires_at": now + 3600})
	wantStatus(t, resp, http.StatusCreated, "")
	tok, _ := resp.JSON(t)["token"].(string)
	bot := hub.BearerClient(t, tok)
	wantStatus(t, bot.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusOK, "")
	hub.Clock.Advance(3600 * time.Second)
	wantStatus(t, bot.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusUnauthorized, "invalid_token")
	if items := listTokens(t, admin); len(items) != 1 || !items[0].Expired {
		t.Fatalf("expired token = %+v", items)
	}
}

// A token acts with its own role, and never above its creator's role as it is now.
func TestAPITokenRoleLimits(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)
	viewerTok := func() *apitest.Client {
		_, tok := admin.CreateToken(t, "ro", "viewer")
		return hub.BearerClient(t, tok)
	}()
	wantStatus(t, viewerTok.Do(t, http.MethodGet, "/api/secrets/webdav", nil), http.StatusOK, "")
	wantStatus(t, viewerTok.Do(t, http.MethodPut, "/api/secrets/webdav/a", map[string]string{"username": "u", "password": "p"}), http.StatusForbidden, "forbidden")
	wantStatus(t, viewerTok.Do(t, http.MethodPost, "/api/tokens", map[string]string{"name": "up", "role": "admin"}), http.StatusForbidden, "forbidden")

	// A second administrator creates an admin token, then is demoted to viewer: the token acts as
	// a viewer from the next request on.
	b := hub.AddUser(t, admin, "bob", "admin")
	_, bobTok := b.CreateToken(t, "bob-admin", "admin")
	bot := hub.BearerClient(t, bobTok)
	wantStatus(t, bot.Do(t, http.MethodGet, "/api/users", nil), http.StatusOK, "")
	bobID := userID(t, admin, "bob")
	wantStatus(t, admin.Do(t, http.MethodPut, "/api/users/"+id64(bobID), map[string]string{"role": "viewer"}), http.StatusOK, "")
	wantStatus(t, bot.Do(t, http.MethodGet, "/api/users", nil), http.StatusForbidden, "forbidden")
	wantStatus(t, bot.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusOK, "")
	// Deleting the creator revokes the token.
	wantStatus(t, admin.Do(t, http.MethodDelete, "/api/users/"+id64(bobID), nil), http.StatusNoContent, "")
	wantStatus(t, bot.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusUnauthorized, "invalid_token")
}

func userID(t *testing.T, admin *apitest.Client, username string) int64 {
	t.Helper()
	resp := admin.Do(t, http.MethodGet, "/api/users", nil)
	var out struct {
		Items []struct {
			ID       int64  `json:"id"`
			Username string `json:"username"`
			Role     string `json:"role"`
		}
	}
	resp.Decode(t, &out)
	for _, u := range out.Items {
		if u.Username == username {
			return u.ID
		}
	}
	t.Fatalf("no user %q in %s", username, resp.Body)
	return 0
}

func id64(n int64) string { return strconv.FormatInt(n, 10) }

// Operators and viewers get 403 with the usual envelope on what their role does not allow, and
// the refused request changes nothing.
func TestRolesForbiddenChangeNothing(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)
	op := hub.AddUser(t, admin, "olga", "operator")
	viewer := hub.AddUser(t, admin, "victor", "viewer")
	wantStatus(t, admin.Do(t, http.MethodPut, "/api/secrets/webdav/kept", map[string]string{"username": "u", "password": "p"}), http.StatusNoContent, "")
	settingsBefore := admin.Do(t, http.MethodGet, "/api/settings/verification", nil).Body

	for _, tc := range []struct {
		name   string
		c      *apitest.Client
		method string
		path   string
		body   any
	}{
		{"OperatorPutSecret", op, http.MethodPut, "/api/secrets/webdav/new", map[string]string{"username": "u", "password": "p"}},
		{"OperatorReadSecretValue", op, http.MethodGet, "/api/secrets/webdav/kept", nil},
		{"OperatorDeleteSecret", op, http.MethodDelete, "/api/secrets/webdav/kept", nil},
		{"OperatorCreateUser", op, http.MethodPost, "/api/users", map[string]string{"username": "x", "password": apitest.Password, "role": "admin"}},
		{"OperatorPromoteSelf", op, http.MethodPut, "/api/users/2", map[string]string{"role": "admin"}},
		{"OperatorListTokens", op, http.MethodGet, "/api/tokens", nil},
		{"OperatorCreateToken", op, http.MethodPost, "/api/tokens", map[string]string{"name": "t", "role": "operator"}},
		{"OperatorChangeSettings", op, http.MethodPut, "/api/settings/verification", map[string]any{"stale_after_days": 3}},
		{"OperatorEnrollAgent", op, http.MethodPost, "/api/agents/enrollment-tokens", map[string]any{}},
		{"ViewerReadSecretValue", viewer, http.MethodGet, "/api/secrets/webdav/kept", nil},
		{"ViewerDeleteUser", viewer, http.MethodDelete, "/api/users/1", nil},
		{"ViewerListUsers", viewer, http.MethodGet, "/api/users", nil},
		{"ViewerSyncAgent", viewer, http.MethodPost, "/api/agents/x/sync-config-now", nil},
		{"ViewerBrowseFiles", viewer, http.MethodGet, "/api/nodes/hub/fs/list?path=/", nil},
		{"ViewerChangeSettings", viewer, http.MethodPut, "/api/settings/verification", map[string]any{"stale_after_days": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.c.Do(t, tc.method, tc.path, tc.body)
			wantStatus(t, resp, http.StatusForbidden, "forbidden")
			if !strings.Contains(string(resp.Body), `"required_role"`) {
				t.Fatalf("envelope lacks required_role: %s", resp.Body)
			}
		})
	}
	if n := userCount(t, hub); n != 3 {
		t.Fatalf("users = %d", n)
	}
	if len(listTokens(t, admin)) != 0 {
		t.Fatal("a token was created")
	}
	resp := admin.Do(t, http.MethodGet, "/api/secrets/webdav", nil)
	if resp.Status != http.StatusOK || !strings.Contains(string(resp.Body), "kept") || strings.Contains(string(resp.Body), `"new"`) {
		t.Fatalf("secrets = %s", resp.Body)
	}
	if after := admin.Do(t, http.MethodGet, "/api/settings/verification", nil).Body; string(after) != string(settingsBefore) {
		t.Fatalf("settings changed: %s", after)
	}
	if st, body := admin.Get(t, "/api/session"); st != http.StatusOK || body["role"] != "admin" {
		t.Fatalf("admin session: %d %v", st, body)
	}
	if op2, _ := op.Get(t, "/api/session"); op2 != http.StatusOK {
		t.Fatal("operator session")
	}
	if st, body := op.Get(t, "/api/session"); body["role"] != "operator" {
		t.Fatalf("operator promoted itself: %d %v", st, body)
	}

	// What the roles do allow.
	wantStatus(t, viewer.Do(t, http.MethodGet, "/api/secrets/webdav", nil), http.StatusOK, "")
	wantStatus(t, viewer.Do(t, http.MethodGet, "/api/settings/verification", nil), http.StatusOK, "")
	wantStatus(t, viewer.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusOK, "")
	if resp := op.Do(t, http.MethodPost, "/api/agents/x/sync-config-now", nil); resp.Status == http.StatusForbidden {
		t.Fatalf("operator may sync an agent's config: %s", resp.Body)
	}
	if resp := op.Do(t, http.MethodGet, "/api/nodes/hub/fs/list?path=/", nil); resp.Status == http.StatusForbidden {
		t.Fatalf("operator may browse files: %s", resp.Body)
	}
}

func TestSessionReportsUserAndRole(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)
	op := hub.AddUser(t, admin, "olga", "operator")
	for _, tc := range []struct {
		c          *apitest.Client
		name, role string
	}{{admin, apitest.Username, "admin"}, {op, "olga", "operator"}} {
		st, body := tc.c.Get(t, "/api/session")
		if st != http.StatusOK || body["authenticated"] != true || body["username"] != tc.name || body["role"] != tc.role {
			t.Fatalf("session = %d %v", st, body)
		}
	}
}

// The last administrator can be neither deleted nor demoted, also by two administrators
// removing each other at once.
func TestLastAdminIsKept(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)
	wantStatus(t, admin.Do(t, http.MethodDelete, "/api/users/1", nil), http.StatusConflict, "last_admin")
	wantStatus(t, admin.Do(t, http.MethodPut, "/api/users/1", map[string]string{"role": "operator"}), http.StatusConflict, "last_admin")
	wantStatus(t, admin.Do(t, http.MethodGet, "/api/users", nil), http.StatusOK, "")
	wantStatus(t, admin.Do(t, http.MethodDelete, "/api/users/99", nil), http.StatusNotFound, "user_not_found")

	b := hub.AddUser(t, admin, "bob", "admin")
	bobID := userID(t, admin, "bob")
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i, c := range []struct {
		c  *apitest.Client
		id int64
	}{{admin, bobID}, {b, 1}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = c.c.Do(t, http.MethodDelete, "/api/users/"+id64(c.id), nil).Status
		}()
	}
	wg.Wait()
	deleted := 0
	for _, st := range statuses {
		if st == http.StatusNoContent {
			deleted++
		}
	}
	if deleted != 1 || userCount(t, hub) != 1 {
		t.Fatalf("statuses %v, %d users left", statuses, userCount(t, hub))
	}
}

// A demoted user's session ends at once; and whatever the session was opened with, each request
// takes the role from the users row.
func TestDemotedUserLosesPowerAtOnce(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)
	b := hub.AddUser(t, admin, "bob", "admin")
	bobID := userID(t, admin, "bob")
	wantStatus(t, b.Do(t, http.MethodGet, "/api/users", nil), http.StatusOK, "")
	wantStatus(t, admin.Do(t, http.MethodPut, "/api/users/"+id64(bobID), map[string]string{"role": "operator"}), http.StatusOK, "")
	wantStatus(t, b.Do(t, http.MethodGet, "/api/users", nil), http.StatusUnauthorized, "unauthorized")
	b.Login(t, "bob", apitest.Password)
	wantStatus(t, b.Do(t, http.MethodGet, "/api/users", nil), http.StatusForbidden, "forbidden")

	// A change of role that ended no session (made behind the API's back) still counts at once.
	c := hub.AddUser(t, admin, "carol", "admin")
	if err := hub.DB.Writer().SetUserRole(t.Context(), userID(t, admin, "carol"), "viewer", hub.Clock.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, c.Do(t, http.MethodGet, "/api/users", nil), http.StatusForbidden, "forbidden")
	if st, body := c.Get(t, "/api/session"); st != http.StatusOK || body["role"] != "viewer" {
		t.Fatalf("session = %v", body)
	}

	// A deleted user's session ends.
	wantStatus(t, admin.Do(t, http.MethodDelete, "/api/users/"+id64(bobID), nil), http.StatusNoContent, "")
	wantStatus(t, b.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusUnauthorized, "unauthorized")
}

func TestUserManagement(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)
	for _, body := range []map[string]string{
		{"username": "", "password": apitest.Password, "role": "viewer"},
		{"username": "x", "password": "short", "role": "viewer"},
		{"username": "x", "password": apitest.Password, "role": "superuser"},
	} {
		wantStatus(t, admin.Do(t, http.MethodPost, "/api/users", body), http.StatusBadRequest, "")
	}
	wantStatus(t, admin.Do(t, http.MethodPost, "/api/users", map[string]string{"username": apitest.Username, "password": apitest.Password, "role": "viewer"}), http.StatusConflict, "username_taken")
	if n := userCount(t, hub); n != 1 {
		t.Fatalf("users = %d", n)
	}
	v := hub.AddUser(t, admin, "victor", "viewer")
	id := userID(t, admin, "victor")
	wantStatus(t, admin.Do(t, http.MethodPut, "/api/users/"+id64(id), map[string]string{"role": "boss"}), http.StatusBadRequest, "invalid_role")
	// Promotion keeps the session; a password reset ends it.
	wantStatus(t, admin.Do(t, http.MethodPut, "/api/users/"+id64(id), map[string]string{"role": "operator"}), http.StatusOK, "")
	wantStatus(t, v.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusOK, "")
	newPW := "another long password"
	wantStatus(t, admin.Do(t, http.MethodPut, "/api/users/"+id64(id), map[string]string{"password": newPW}), http.StatusOK, "")
	wantStatus(t, v.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusUnauthorized, "unauthorized")
	v.Login(t, "victor", newPW)
	if st, body := v.Get(t, "/api/session"); body["role"] != "operator" {
		t.Fatalf("session = %d %v", st, body)
	}
}

// Changing one's own password needs the current one, and logs out the user's other sessions.
func TestChangeOwnPassword(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)
	v := hub.AddUser(t, admin, "victor", "viewer")
	other := hub.Client(t)
	other.Login(t, "victor", apitest.Password)
	newPW := "a brand new passphrase"
	wantStatus(t, v.Do(t, http.MethodPut, "/api/users/me/password", map[string]string{"current_password": "wrong", "new_password": newPW}), http.StatusForbidden, "invalid_current_password")
	wantStatus(t, v.Do(t, http.MethodPut, "/api/users/me/password", map[string]string{"current_password": apitest.Password, "new_password": "short"}), http.StatusBadRequest, "invalid_password")
	wantStatus(t, other.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusOK, "")
	wantStatus(t, v.Do(t, http.MethodPut, "/api/users/me/password", map[string]string{"current_password": apitest.Password, "new_password": newPW}), http.StatusNoContent, "")
	wantStatus(t, v.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusOK, "")
	wantStatus(t, other.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusUnauthorized, "unauthorized")
	fresh := hub.Client(t)
	if resp := fresh.Do(t, http.MethodPost, "/api/auth/login", map[string]string{"username": "victor", "password": apitest.Password}); resp.Status != http.StatusUnauthorized {
		t.Fatalf("old password still works: %d", resp.Status)
	}
	fresh.Login(t, "victor", newPW)
}

// Guesses at the current password count against the login limits: once they are spent, even the
// right password is refused with 429 and Retry-After, unchecked, and the password stays.
func TestChangeOwnPasswordThrottled(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)
	v := hub.AddUser(t, admin, "victor", "viewer")
	newPW := "a brand new passphrase"
	for range httpapi.ThrottleMaxFailures {
		wantStatus(t, v.Do(t, http.MethodPut, "/api/users/me/password", map[string]string{"current_password": "wrong", "new_password": newPW}), http.StatusForbidden, "invalid_current_password")
	}
	r := v.Do(t, http.MethodPut, "/api/users/me/password", map[string]string{"current_password": apitest.Password, "new_password": newPW})
	wantStatus(t, r, http.StatusTooManyRequests, "rate_limited")
	if r.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), "too many failed attempts") {
		t.Fatalf("throttled change: %v %s", r.Header, r.Body)
	}
	hub.Clock.Advance(httpapi.ThrottleLock)
	fresh := hub.Client(t)
	fresh.Login(t, "victor", apitest.Password)
}

// TestPasswordChangeRevokesTokens: a password changed by its user or reset by an administrator
// revokes the user's API tokens with the sessions; other users' tokens stay.
func TestPasswordChangeRevokesTokens(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	admin := hub.Login(t)
	_, adminTok := admin.CreateToken(t, "admin-ci", "admin")
	b := hub.AddUser(t, admin, "bob", "admin")
	_, own := b.CreateToken(t, "bob-own", "viewer")
	ownBot := hub.BearerClient(t, own)
	wantStatus(t, ownBot.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusOK, "")
	newPW := "a brand new passphrase"
	wantStatus(t, b.Do(t, http.MethodPut, "/api/users/me/password", map[string]string{"current_password": apitest.Password, "new_password": newPW}), http.StatusNoContent, "")
	wantStatus(t, ownBot.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusUnauthorized, "invalid_token")

	_, reset := b.CreateToken(t, "bob-reset", "viewer")
	resetBot := hub.BearerClient(t, reset)
	wantStatus(t, resetBot.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusOK, "")
	wantStatus(t, admin.Do(t, http.MethodPut, "/api/users/"+id64(userID(t, admin, "bob")), map[string]string{"password": "reset by the administrator"}), http.StatusOK, "")
	wantStatus(t, resetBot.Do(t, http.MethodGet, "/api/sessions", nil), http.StatusUnauthorized, "invalid_token")
	wantStatus(t, hub.BearerClient(t, adminTok).Do(t, http.MethodGet, "/api/sessions", nil), http.StatusOK, "")
}
