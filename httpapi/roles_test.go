package httpapi

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/bulk"
	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/snapshots"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

type noDrills struct{}

func (noDrills) JobChanged(string)                     {}
func (noDrills) Request(context.Context, string) error { return nil }

// openRoutes are the /api routes served without a session: they are the only ones routeRoles
// need not list.
var openRoutes = map[string]bool{
	"GET /api/health": true, "GET /api/ready": true, "GET /api/system": true, "GET /api/setup/status": true,
	"GET /api/control-plane/public-metadata": true, "POST /api/setup/initialize": true,
	"POST /api/auth/login": true, "POST /api/auth/logout": true, "GET /api/session": true,
}

// Every /api route, with every optional service present, is either open or has a role in
// routeRoles; and every routeRoles entry names a real route, so that a renamed route cannot
// leave a stale entry behind while it falls back to admin-only.
func TestRouteRolesComplete(t *testing.T) {
	t.Parallel()
	h := New(Config{
		Logger: zerolog.Nop(), DB: storagetest.Open(t),
		Runs: &runs.Service{}, Snapshots: &snapshots.Service{}, Operations: &operations.Service{},
		Notifications: &notify.Service{}, Drills: noDrills{}, Bulk: bulk.New(bulk.Config{}),
	})
	seen := map[string]bool{}
	err := chi.Walk(h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !strings.HasPrefix(route, "/api/") {
			return nil
		}
		key := method + " " + route
		seen[key] = true
		if openRoutes[key] {
			return nil
		}
		if _, ok := routeRoles[key]; !ok {
			t.Errorf("route %q has no role in routeRoles (roles.go)", key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, role := range routeRoles {
		if !seen[key] {
			t.Errorf("routeRoles lists %q, which is not a route", key)
		}
		if !ValidRole(role) {
			t.Errorf("routeRoles gives %q the unknown role %q", key, role)
		}
	}
	for key := range openRoutes {
		if !seen[key] {
			t.Errorf("openRoutes lists %q, which is not a route", key)
		}
	}
}

func TestRoleOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		have, need string
		ok         bool
	}{
		{RoleAdmin, RoleAdmin, true}, {RoleAdmin, RoleViewer, true}, {RoleOperator, RoleOperator, true},
		{RoleOperator, RoleAdmin, false}, {RoleViewer, RoleOperator, false}, {RoleViewer, RoleViewer, true},
		{"", RoleViewer, false}, {"root", RoleViewer, false},
	} {
		if got := RoleAtLeast(tc.have, tc.need); got != tc.ok {
			t.Errorf("RoleAtLeast(%q, %q) = %v", tc.have, tc.need, got)
		}
	}
	if lowerRole(RoleAdmin, RoleViewer) != RoleViewer || lowerRole(RoleOperator, RoleAdmin) != RoleOperator {
		t.Error("lowerRole")
	}
}
