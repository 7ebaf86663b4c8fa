package respond_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// TestErrorLogLevels: a failure of this Hub is an error; a refusal or silence upstream (a
// receiver, an agent, a target answering 502/504) is a warning; a client's mistake is debug.
func TestErrorLogLevels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		err   error
		code  int
		level string
	}{
		{"Internal", errors.New("disk on fire"), http.StatusInternalServerError, "error"},
		{"Unavailable", respond.New(http.StatusServiceUnavailable, "secrets_unavailable", "no store"), http.StatusServiceUnavailable, "error"},
		{"BadGateway", respond.New(http.StatusBadGateway, "notification_test_failed", "refused"), http.StatusBadGateway, "warn"},
		{"GatewayTimeout", respond.New(http.StatusGatewayTimeout, "agent_timeout", "no answer"), http.StatusGatewayTimeout, "warn"},
		{"NotFound", respond.NotFound("job_not_found", "job not found"), http.StatusNotFound, "debug"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			log := zerolog.New(&logs)
			r := httptest.NewRequest(http.MethodGet, "/api/x", nil)
			r = r.WithContext(log.WithContext(r.Context()))
			w := httptest.NewRecorder()
			respond.Error(w, r, tc.err)
			if w.Code != tc.code {
				t.Fatalf("status = %d, want %d", w.Code, tc.code)
			}
			var line struct {
				Level  string `json:"level"`
				Status int    `json:"status"`
			}
			if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
				t.Fatalf("log %q: %v", logs.String(), err)
			}
			if line.Level != tc.level || line.Status != tc.code {
				t.Fatalf("logged %s, want level %s", logs.String(), tc.level)
			}
		})
	}
}
