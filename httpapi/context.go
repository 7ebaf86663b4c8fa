package httpapi

import (
	"net/http"
)

type ctxKey int

const (
	userIDKey ctxKey = iota
	sessionPublicIDKey
	principalKey
)

// Roles, from most to least powerful. Every account is an admin until users with other roles
// exist.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

// Principal is who authorised a request: a user's session, or an API token (TokenID != 0).
// The audit log, metrics and role checks read it; requireSession puts it in the context.
type Principal struct {
	UserID    int64
	Username  string
	Role      string
	TokenID   int64
	TokenName string
}

// PrincipalOf returns who authorised r, and false outside the authenticated routes.
func PrincipalOf(r *http.Request) (Principal, bool) {
	p, ok := r.Context().Value(principalKey).(Principal)
	return p, ok
}

// UserID is the id of the administrator whose session authorised r, or 0 outside the routes
// registered in sessionRoutes (user ids start at 1).
func UserID(r *http.Request) int64 {
	id, _ := r.Context().Value(userIDKey).(int64)
	return id
}
