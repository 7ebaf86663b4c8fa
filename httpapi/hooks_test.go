package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/httpapi/respond"
)

// authorizeHooks refuses a request without an administrator's session when it sets or changes
// hooks, and lets through one that leaves them alone.
func TestAuthorizeHooks(t *testing.T) {
	t.Parallel()
	parse := func(doc string) *jobspec.Spec {
		s, err := jobspec.ParseAndValidate([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	plain := parse(`{"v":1,"type":"filesystem","source":{"paths":["/a"]},"target":{"type":"local_dir","base_dir":"/b"}}`)
	hooked := parse(`{"v":1,"type":"filesystem","source":{"paths":["/a"]},"target":{"type":"local_dir","base_dir":"/b"},"hooks":{"before":{"command":["true"]}}}`)
	other := parse(`{"v":1,"type":"filesystem","source":{"paths":["/a"]},"target":{"type":"local_dir","base_dir":"/b"},"hooks":{"before":{"command":["false"]}}}`)
	anon := httptest.NewRequest("PUT", "/api/jobs/x", nil)
	admin := anon.WithContext(context.WithValue(anon.Context(), principalKey, Principal{UserID: 1, Role: RoleAdmin}))
	operator := anon.WithContext(context.WithValue(anon.Context(), principalKey, Principal{UserID: 2, Role: RoleOperator}))
	for _, tc := range []struct {
		name     string
		r        *http.Request
		old, new *jobspec.Spec
		ok       bool
	}{
		{"NoHooks", anon, nil, plain, true},
		{"Unchanged", anon, hooked, hooked, true},
		{"SetWithoutAdmin", anon, plain, hooked, false},
		{"CreateWithoutAdmin", anon, nil, hooked, false},
		{"ChangeWithoutAdmin", anon, hooked, other, false},
		{"RemoveWithoutAdmin", anon, hooked, plain, false},
		{"Admin", admin, plain, hooked, true},
		{"Operator", operator, plain, hooked, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := authorizeHooks(tc.r, tc.old, tc.new)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if e, _ := err.(*respond.APIError); err != nil && (e == nil || e.Status != http.StatusForbidden || e.Code != "hooks_forbidden") {
				t.Fatalf("err = %#v", err)
			}
		})
	}
}
