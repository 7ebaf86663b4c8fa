package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bastion-backup/bastion/httpapi/audit"
	"github.com/bastion-backup/bastion/storage"
)

// Whatever authentication put the principal in the context, auditPrincipal hands it to the audit
// note: an API token with its owner, or a session's user.
func TestAuditPrincipalTakesTokenOrUser(t *testing.T) {
	t.Parallel()
	s := &Server{}
	for name, tc := range map[string]struct {
		p    Principal
		want audit.Note
	}{
		"Token": {Principal{UserID: 3, Username: "ci", Role: RoleAdmin, TokenID: 9, TokenName: "deploy"},
			audit.Note{ActorKind: storage.ActorToken, UserID: 3, Username: "ci", TokenID: 9, TokenName: "deploy"}},
		"Session": {Principal{UserID: 1, Role: RoleAdmin},
			audit.Note{ActorKind: storage.ActorUser, UserID: 1}},
	} {
		t.Run(name, func(t *testing.T) {
			r, note := audit.Start(httptest.NewRequest(http.MethodPost, "/api/jobs", nil))
			r = r.WithContext(context.WithValue(r.Context(), principalKey, tc.p))
			s.auditPrincipal(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(httptest.NewRecorder(), r)
			if *note != tc.want {
				t.Errorf("note %+v, want %+v", *note, tc.want)
			}
		})
	}
}

func TestAuditOutcome(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]string{200: "ok", 204: "ok", 302: "ok", 400: "error", 401: "denied", 403: "denied",
		404: "error", 415: "error", 421: "denied", 429: "denied", 500: "error"} {
		if got := auditOutcome(status); got != want {
			t.Errorf("outcome of %d = %s, want %s", status, got, want)
		}
	}
}
