package send_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/notify/send"
)

// Post and NewError are what a new channel driver builds on: classified, redacted errors and the
// receiver's Retry-After.
func TestPostForDrivers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusAccepted)
		case "/busy":
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte("slow down, token tok-secret"))
		}
	}))
	defer srv.Close()
	h := send.HTTP{}
	if err := h.Post(context.Background(), "pager", srv.URL+"/ok", time.Second, []byte(`{}`), nil, "tok-secret"); err != nil {
		t.Fatal(err)
	}
	err := h.Post(context.Background(), "pager", srv.URL+"/busy?key=url-secret", time.Second, []byte(`{}`), nil, "tok-secret")
	ra, ok := send.RetryAfter(err)
	if send.Classify(err) != send.KindRateLimited || !ok || ra != 2*time.Minute ||
		strings.Contains(err.Error(), "tok-secret") || strings.Contains(err.Error(), "url-secret") {
		t.Fatalf("busy: %v (kind %s, retry after %v %t)", err, send.Classify(err), ra, ok)
	}
	e := send.NewError("", "pager: login refused for https://u:pw-secret@host/x", errors.New("x"), "https://u:pw-secret@host/x")
	if strings.Contains(e.Error(), "pw-secret") {
		t.Fatalf("not redacted: %v", e)
	}
}
