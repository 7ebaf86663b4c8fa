package middleware_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/httpapi/middleware"
)

// TestBodyDeadlineIsLiftedOnceTheBodyIsRead: a handler that has read its body and then works past
// the body deadline keeps its connection and context: the deadline covers the body only (a
// deadline still armed when net/http starts its background read would cancel the request).
func TestBodyDeadlineIsLiftedOnceTheBodyIsRead(t *testing.T) {
	t.Parallel()
	const d = 50 * time.Millisecond
	srv := httptest.NewServer(middleware.BodyDeadline(d, d)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		// Outlive the deadline: this is what the test is about, not a synchronisation.
		wait := time.NewTimer(4 * d)
		defer wait.Stop()
		select {
		case <-r.Context().Done():
			http.Error(w, "request context canceled", 500)
		case <-wait.C:
			_, _ = io.WriteString(w, "done")
		}
	})))
	t.Cleanup(srv.Close)
	for _, path := range []string{"/api/x", "/agent/x"} {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(`{"a":1}`))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "done" {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
}
