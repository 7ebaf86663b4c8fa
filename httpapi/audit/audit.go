// Package audit carries what a request's handlers learn about it for the audit log (who acted,
// on which object), and writes audit entries to the database off the request path.
//
// It is a package of its own so that the agent enrollment route (httpapi/agentsock), which
// httpapi imports, can fill a note too.
package audit

import (
	"context"
	"net/http"

	"github.com/bastion-backup/bastion/storage"
)

type ctxKey struct{}

// Note is what handlers tell the audit log about the request they serve. The methods do nothing
// on a nil Note (a request the audit log does not record), so handlers call them unconditionally.
type Note struct {
	ActorKind  string // "" until a method sets one: anonymous
	UserID     int64  // 0: none
	Username   string
	TokenID    int64
	TokenName  string
	ObjectKind string
	ObjectID   string
}

// Start returns r carrying a fresh Note, and that Note.
func Start(r *http.Request) (*http.Request, *Note) {
	n := &Note{}
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, n)), n
}

// From returns the Note of r, or nil when the request is not audited.
func From(r *http.Request) *Note {
	n, _ := r.Context().Value(ctxKey{}).(*Note)
	return n
}

// User records that a user acted: id 0 when only the name is known (setup), username "" when
// only the id is (the name is then looked up when the entry is written).
func (n *Note) User(id int64, username string) {
	if n == nil {
		return
	}
	n.ActorKind, n.UserID, n.Username = storage.ActorUser, id, username
}

// Token records that an API token acted, on behalf of its user when userID is not 0.
func (n *Note) Token(id int64, name string, userID int64, username string) {
	if n == nil {
		return
	}
	n.ActorKind, n.TokenID, n.TokenName, n.UserID, n.Username = storage.ActorToken, id, name, userID, username
}

// Attempt records the username a client tried to log in as, without claiming that it is that
// user: the actor stays anonymous until User is called.
func (n *Note) Attempt(username string) {
	if n == nil {
		return
	}
	n.Username = username
}

// Agent records that an agent acted (enrolled): it is both the actor and the object.
func (n *Note) Agent(id string) {
	if n == nil {
		return
	}
	n.ActorKind, n.ObjectKind, n.ObjectID = storage.ActorAgent, "agents", id
}

// Object names what the request acted on when the route's URL does not (a create: the new id).
func (n *Note) Object(kind, id string) {
	if n == nil {
		return
	}
	n.ObjectKind, n.ObjectID = kind, id
}
