package targettest

import (
	"net/http"
	"sync"
	"testing"
)

// Injector sits in front of a real server in a driver's fault tests. Requests that match a rule
// get the rule's answer; the others go to Next unchanged. It counts requests by key (Key names a
// request: an S3 operation, an HTTP method) and tracks how many were in flight at once.
type Injector struct {
	Next http.Handler
	Key  func(*http.Request) string // nil: the request's method

	mu          sync.Mutex
	rules       []*Rule
	counts      map[string]int
	inFlight    int
	maxInFlight int
}

// Rule is one injected fault.
type Rule struct {
	Key   string                   // the request's key; "" matches any
	Match func(*http.Request) bool // nil matches any
	Times int                      // how often it applies; -1 always
	Do    http.HandlerFunc
}

// Add appends a rule; the first rule that matches a request answers it.
func (in *Injector) Add(r *Rule) { in.mu.Lock(); in.rules = append(in.rules, r); in.mu.Unlock() }

// Count is how many requests with key were sent so far, answered by a rule or not.
func (in *Injector) Count(key string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.counts[key]
}

// ExpectSent fails the test unless requests with key were sent want times in all.
func (in *Injector) ExpectSent(t testing.TB, key string, want int) {
	t.Helper()
	if n := in.Count(key); n != want {
		t.Fatalf("%s sent %d times, want %d", key, n, want)
	}
}

// MaxInFlight is the most requests that were being served at once.
func (in *Injector) MaxInFlight() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.maxInFlight
}

func (in *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Method
	if in.Key != nil {
		key = in.Key(r)
	}
	in.mu.Lock()
	if in.counts == nil {
		in.counts = map[string]int{}
	}
	in.counts[key]++
	in.inFlight++
	in.maxInFlight = max(in.maxInFlight, in.inFlight)
	var hit *Rule
	for _, ru := range in.rules {
		if ru.Times != 0 && (ru.Key == "" || ru.Key == key) && (ru.Match == nil || ru.Match(r)) {
			if ru.Times > 0 {
				ru.Times--
			}
			hit = ru
			break
		}
	}
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		in.inFlight--
		in.mu.Unlock()
	}()
	if hit != nil {
		hit.Do(w, r)
		return
	}
	in.Next.ServeHTTP(w, r)
}
