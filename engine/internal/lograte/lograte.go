// Package lograte keeps a loop that fails on every pass from flooding the log: it lets one
// message through per interval.
package lograte

import (
	"sync"
	"time"
)

// Limiter lets one message through per interval. The zero value is ready to use.
type Limiter struct {
	mu   sync.Mutex
	last time.Time
}

// Allow reports whether a message may go out at now: the first one does, then none until every
// has passed. A clock that went back (or did not move) lets the message through: better one line
// too many than a failure nobody sees for an hour.
func (l *Limiter) Allow(now time.Time, every time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < every && now.After(l.last) {
		return false
	}
	l.last = now
	return true
}
