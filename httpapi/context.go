package httpapi

import (
	"context"
	"net/http"

	"github.com/bastion-backup/bastion/storage"
)

type ctxKey int

const sessionKey ctxKey = iota

// authSession is what requireSession learned about the request's session.
type authSession struct {
	userID int64
	row    storage.Session
}

func withSession(ctx context.Context, s authSession) context.Context {
	return context.WithValue(ctx, sessionKey, s)
}

// UserID is the id of the administrator whose session authorised r, or 0 outside the routes
// registered in sessionRoutes (user ids start at 1).
func UserID(r *http.Request) int64 { return UserIDFrom(r.Context()) }

// UserIDFrom is UserID for code that only has the request's context.
func UserIDFrom(ctx context.Context) int64 {
	s, _ := ctx.Value(sessionKey).(authSession)
	return s.userID
}
