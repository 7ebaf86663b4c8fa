package middleware

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// Default body read deadlines: an API body is a small JSON document (APIBodyLimit), an agent
// body (an ingested offline run) may be AgentBodyLimit and come over a slow link.
const (
	DefaultBodyReadTimeout      = 60 * time.Second
	DefaultAgentBodyReadTimeout = 5 * time.Minute
)

// BodyDeadline gives every request that has a body a deadline to finish sending it: api for
// everything, agent for paths under /agent/. Without it a client trickling a byte every few
// seconds holds a connection and a handler forever, unauthenticated routes included (the
// server's ReadHeaderTimeout covers the headers only).
//
// The deadline covers reading the body only: net/http clears it when the body has been read to
// its end (it starts its background read then), so a handler that then works for long is not cut
// off. Requests without a body — GETs, body-less actions, WebSocket
// upgrades — get no deadline at all; a hijacked connection is the WebSocket library's to time.
// A read that hits the deadline fails with an error that respond.Error answers 408
// request_timeout, and the connection is closed after that answer.
func BodyDeadline(api, agent time.Duration) func(http.Handler) http.Handler {
	if api <= 0 {
		api = DefaultBodyReadTimeout
	}
	if agent <= 0 {
		agent = DefaultAgentBodyReadTimeout
	}
	// Agent uploads are the largest bodies: never give them less time than API bodies.
	agent = max(agent, api)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
				next.ServeHTTP(w, r)
				return
			}
			d := api
			if strings.HasPrefix(r.URL.Path, "/agent/") {
				d = agent
			}
			// A writer that cannot set deadlines (a test recorder) has no connection to hold.
			if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(d)); err == nil {
				r.Body = deadlineBody{r.Body}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// deadlineBody marks a read that hit the deadline as respond.ErrBodyReadTimeout (408), so that
// handlers need not know about connection deadlines. The deadline stays in place after it
// passed: net/http's drain of the rest of the body after the handler fails at once, and the
// connection is closed instead of waiting for the trickle.
type deadlineBody struct {
	io.ReadCloser
}

func (b deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: %w", respond.ErrBodyReadTimeout, err)
	}
	return n, err
}
