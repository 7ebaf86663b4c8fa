package httpapi

import (
	"net/http"
)

type ctxKey int

const (
	userIDKey ctxKey = iota
	sessionPublicIDKey
	sessionIDKey
	principalKey
)

// Roles, from most to least powerful: admin does everything; operator runs, cancels, restores
// and verifies but changes no configuration, secrets, users or tokens; viewer only reads, and
// never a secret's value. routeRoles (roles.go) says what each route needs.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

// Principal is who authorised a request: a user's session, or an API token (TokenID != 0).
// The audit log, metrics and role checks read it; requireSession puts it in the context. Role is
// what the request may do: a session's is the user's role as the users row says now; a token's
// is the lower of its own role and its creator's now. UserID and Username are the token's
// creator for a token.
type Principal struct {
	UserID    int64
	Username  string
	Role      string
	TokenID   int64
	TokenName string
	ExpiresAt int64 // when the session or API token ends (unix seconds); 0: never
}

// PrincipalOf returns who authorised r, and false outside the authenticated routes.
func PrincipalOf(r *http.Request) (Principal, bool) {
	p, ok := r.Context().Value(principalKey).(Principal)
	return p, ok
}

// UserID is the id of the user whose session (or API token) authorised r, or 0 outside the routes
// registered in sessionRoutes (user ids start at 1).
func UserID(r *http.Request) int64 {
	id, _ := r.Context().Value(userIDKey).(int64)
	return id
}
