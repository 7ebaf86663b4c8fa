package httpapi

import (
	"net/http"
)

type ctxKey int

const (
	userIDKey ctxKey = iota
	sessionPublicIDKey
)

// UserID is the id of the administrator whose session authorised r, or 0 outside the routes
// registered in sessionRoutes (user ids start at 1).
func UserID(r *http.Request) int64 {
	id, _ := r.Context().Value(userIDKey).(int64)
	return id
}
