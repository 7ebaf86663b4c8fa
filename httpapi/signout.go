package httpapi

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/httpapi/respond"
)

// signOuts tells long-lived streams that credentials may have ended: a logout, a revoked session
// or API token, a deleted user, a reset password, a lowered role, or sessions evicted by a login
// over the per-user limit. A WebSocket authenticates
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
// carries stop authenticating: checked at once, after every sign-out, and when the session or API
// token reaches its expiry. It also ends with ctx; stop ends the watch and waits for it.
func (s *Server) whileSignedIn(ctx context.Context, r *http.Request) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var expiry clock.Timer
		var expired <-chan time.Time
		defer func() {
			if expiry != nil {
				expiry.Stop()
			}
		}()
		for {
			// Taken before the check: a sign-out during the check wakes the next one.
			woken := s.signOuts.next()
			p, _, err := s.authenticate(r.WithContext(ctx))
			var ae *respond.APIError
			if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
				cancel(errSignedOut)
				return
			}
			if expiry == nil && err == nil && p.ExpiresAt > 0 {
				// An expiry never moves, so one timer serves every later check.
				expiry = s.clock.NewTimer(time.Unix(p.ExpiresAt, 0).Sub(s.now()))
				expired = expiry.C()
			}
			select {
			case <-ctx.Done():
				return
			case <-woken:
			case <-expired:
				expired = nil // the check below finds the session or token gone
			}
		}
	}()
	return ctx, func() { cancel(nil); <-done }
}
