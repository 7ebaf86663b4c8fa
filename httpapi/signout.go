package httpapi

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// signOuts tells long-lived streams that credentials may have ended: a logout, a revoked session
// or API token, a deleted user, a reset password or a lowered role. A WebSocket authenticates
// once, at its handshake; without this it would go on streaming to whoever held it.
type signOuts struct {
	mu sync.Mutex
	ch chan struct{} // closed and replaced by each sign-out
}

func newSignOuts() *signOuts { return &signOuts{ch: make(chan struct{})} }

// happened wakes every stream, which then checks its own credentials again.
func (s *signOuts) happened() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

func (s *signOuts) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// errSignedOut ends a stream whose session or token no longer holds.
var errSignedOut = errors.New("the session or API token that opened this stream has ended")

// whileSignedIn returns a context that is canceled with errSignedOut once the credentials r
// carries stop authenticating (checked at once, then after every sign-out), or when ctx ends.
// stop releases its goroutine.
func (s *Server) whileSignedIn(ctx context.Context, r *http.Request) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		for {
			// Taken before the check: a sign-out during the check wakes the next one.
			woken := s.signOuts.next()
			if _, _, err := s.authenticate(r.WithContext(ctx)); err != nil {
				var ae *respond.APIError
				if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
					cancel(errSignedOut)
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-woken:
			}
		}
	}()
	return ctx, func() { cancel(nil) }
}
