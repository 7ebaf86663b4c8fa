package httpapi

import (
	"net/http"
	"strings"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// roleRank orders the roles; an unknown role ranks below every known one and is allowed nothing.
var roleRank = map[string]int{RoleViewer: 1, RoleOperator: 2, RoleAdmin: 3}

// ValidRole reports whether role is one of RoleAdmin, RoleOperator, RoleViewer.
func ValidRole(role string) bool { return roleRank[role] > 0 }

// RoleAtLeast reports whether a principal with role have may do what needs role need.
func RoleAtLeast(have, need string) bool {
	return roleRank[have] > 0 && roleRank[have] >= roleRank[need]
}

// lowerRole returns the less powerful of two roles: a token acts with at most its creator's role
// as the users row says now.
func lowerRole(a, b string) string {
	if roleRank[a] <= roleRank[b] {
		return a
	}
	return b
}

// hasRole reports whether r was authorised by a principal with at least role need.
func hasRole(r *http.Request, need string) bool {
	p, ok := PrincipalOf(r)
	return ok && RoleAtLeast(p.Role, need)
}

// routeRoles is the least role each authenticated route needs, keyed by method and the full chi
// pattern. requireSession looks every request up here; a route missing from the table is
// admin-only, and TestRouteRolesComplete fails until it is classified.
//
// Viewers read everything except secret values. Operators also start and stop work (run, cancel,
// restore, verify, retries) but change no configuration. Administrators do the rest: jobs,
// secrets, agents, settings, deletions, users and tokens.
var routeRoles = map[string]string{
	// Jobs.
	"GET /api/jobs":                 RoleViewer,
	"POST /api/jobs":                RoleAdmin,
	"GET /api/jobs/workspace":       RoleViewer,
	"GET /api/jobs/{id}":            RoleViewer,
	"PUT /api/jobs/{id}":            RoleAdmin,
	"DELETE /api/jobs/{id}":         RoleAdmin,
	"POST /api/jobs/{id}/archive":   RoleAdmin,
	"POST /api/jobs/{id}/unarchive": RoleAdmin,
	"POST /api/jobs/{id}/run":       RoleOperator,
	"GET /api/jobs/{id}/runs":       RoleViewer,
	"GET /api/jobs/{id}/workspace":  RoleViewer,
	"POST /api/jobs/{id}/verify":    RoleOperator,
	"GET /api/schedule/preview":     RoleViewer,

	// Retention: preview changes nothing; apply deletes snapshots.
	"GET /api/jobs/{id}/retention":          RoleViewer,
	"PUT /api/jobs/{id}/retention":          RoleAdmin,
	"POST /api/jobs/{id}/retention/preview": RoleViewer,
	"POST /api/jobs/{id}/retention/apply":   RoleAdmin,

	// Snapshots: deleting, pinning and giving up on a delete are decisions; retrying one is not.
	"GET /api/jobs/{id}/snapshots":                            RoleViewer,
	"POST /api/jobs/{id}/snapshots/delete":                    RoleAdmin,
	"GET /api/jobs/{id}/snapshots/{run_id}":                   RoleViewer,
	"POST /api/jobs/{id}/snapshots/{run_id}/pin":              RoleAdmin,
	"POST /api/jobs/{id}/snapshots/{run_id}/unpin":            RoleAdmin,
	"POST /api/jobs/{id}/snapshots/{run_id}/delete":           RoleAdmin,
	"GET /api/jobs/{id}/snapshots/{run_id}/delete-task":       RoleViewer,
	"GET /api/jobs/{id}/snapshots/{run_id}/delete-events":     RoleViewer,
	"POST /api/jobs/{id}/snapshots/{run_id}/delete/retry-now": RoleOperator,
	"POST /api/jobs/{id}/snapshots/{run_id}/delete/ignore":    RoleAdmin,

	// Runs and operations (restore, verify).
	"GET /api/runs":                    RoleViewer,
	"GET /api/runs/{id}":               RoleViewer,
	"POST /api/runs/{id}/cancel":       RoleOperator,
	"GET /api/runs/{id}/events":        RoleViewer,
	"GET /api/runs/{id}/events/ws":     RoleViewer,
	"GET /api/runs/{id}/event-console": RoleViewer,
	"GET /api/runs/{id}/workspace":     RoleViewer,
	"POST /api/runs/{id}/restore":      RoleOperator,
	"POST /api/runs/{id}/verify":       RoleOperator,
	"GET /api/runs/{id}/operations":    RoleViewer,
	"GET /api/runs/{id}/entries":       RoleViewer,
	"GET /api/operations/{id}":         RoleViewer,
	"GET /api/operations/{id}/events":  RoleViewer,
	"POST /api/operations/{id}/cancel": RoleOperator,

	// Incomplete-run cleanup.
	"GET /api/maintenance/incomplete-cleanup":                     RoleViewer,
	"GET /api/maintenance/incomplete-cleanup/{run_id}":            RoleViewer,
	"POST /api/maintenance/incomplete-cleanup/{run_id}/retry-now": RoleOperator,
	"POST /api/maintenance/incomplete-cleanup/{run_id}/ignore":    RoleAdmin,
	"POST /api/maintenance/incomplete-cleanup/{run_id}/unignore":  RoleAdmin,

	// Secrets: the lists carry names and dates only; a secret's value is admin-only.
	"GET /api/secrets/{kind}/":                          RoleViewer,
	"GET /api/secrets/{kind}/{name}":                    RoleAdmin,
	"PUT /api/secrets/{kind}/{name}":                    RoleAdmin,
	"DELETE /api/secrets/{kind}/{name}":                 RoleAdmin,
	"GET /api/nodes/{node_id}/secrets/{kind}/":          RoleViewer,
	"GET /api/nodes/{node_id}/secrets/{kind}/{name}":    RoleAdmin,
	"PUT /api/nodes/{node_id}/secrets/{kind}/{name}":    RoleAdmin,
	"DELETE /api/nodes/{node_id}/secrets/{kind}/{name}": RoleAdmin,

	// Browsing a node's files or a WebDAV server reaches beyond the Hub's own records: operators
	// need it to pick restore destinations, viewers do not.
	"GET /api/nodes/{node_id}/fs/list":      RoleOperator,
	"GET /api/nodes/{node_id}/webdav/list":  RoleOperator,
	"POST /api/nodes/{node_id}/webdav/list": RoleOperator,

	// Agents.
	"POST /api/agents/enrollment-tokens":    RoleAdmin,
	"GET /api/agents":                       RoleViewer,
	"GET /api/agents/labels":                RoleViewer,
	"GET /api/agents/{id}":                  RoleViewer,
	"POST /api/agents/{id}/revoke":          RoleAdmin,
	"POST /api/agents/{id}/rotate-key":      RoleAdmin,
	"POST /api/agents/{id}/sync-config-now": RoleOperator,
	"PUT /api/agents/{id}/labels":           RoleAdmin,
	"POST /api/agents/{id}/labels/add":      RoleAdmin,
	"POST /api/agents/{id}/labels/remove":   RoleAdmin,
	"GET /api/fleet":                        RoleViewer,

	// Bulk operations: starting, previewing or retrying one also needs the role of the matching
	// single-agent route, checked per kind (labels, job deploy and credential distribution:
	// admin; config sync: operator).
	"POST /api/bulk-operations/preview":           RoleOperator,
	"GET /api/bulk-operations":                    RoleViewer,
	"POST /api/bulk-operations":                   RoleOperator,
	"GET /api/bulk-operations/{id}":               RoleViewer,
	"POST /api/bulk-operations/{id}/cancel":       RoleOperator,
	"POST /api/bulk-operations/{id}/retry-failed": RoleOperator,
	"GET /api/fleet/{id}":                         RoleViewer,

	// Notifications: sending a test and working the queue are operations; settings are admin's.
	"GET /api/notifications/settings":                               RoleViewer,
	"PUT /api/notifications/settings":                               RoleAdmin,
	"POST /api/notifications/templates/validate":                    RoleViewer,
	"GET /api/notifications/destinations":                           RoleViewer,
	"POST /api/notifications/destinations/{channel}/{name}/enabled": RoleAdmin,
	"POST /api/notifications/destinations/{channel}/{name}/test":    RoleOperator,
	"GET /api/notifications/queue":                                  RoleViewer,
	"POST /api/notifications/queue/{id}/retry-now":                  RoleOperator,
	"POST /api/notifications/queue/{id}/cancel":                     RoleOperator,

	// Settings, dashboard.
	"GET /api/settings/verification":       RoleViewer,
	"PUT /api/settings/verification":       RoleAdmin,
	"GET /api/settings/hub-runtime-config": RoleViewer,
	"PUT /api/settings/hub-runtime-config": RoleAdmin,
	"GET /api/dashboard/overview":          RoleViewer,

	// Command center and integrations: read-only aggregates, no secret values.
	"GET /api/command-center":            RoleViewer,
	"GET /api/integrations":              RoleViewer,
	"GET /api/integrations/storage":      RoleViewer,
	"GET /api/integrations/distribution": RoleViewer,

	// One's own sessions and password: every user.
	"GET /api/sessions":          RoleViewer,
	"DELETE /api/sessions/{id}":  RoleViewer,
	"PUT /api/users/me/password": RoleViewer,

	// Users and API tokens.
	"GET /api/users":          RoleAdmin,
	"POST /api/users":         RoleAdmin,
	"PUT /api/users/{id}":     RoleAdmin,
	"DELETE /api/users/{id}":  RoleAdmin,
	"GET /api/tokens":         RoleAdmin,
	"POST /api/tokens":        RoleAdmin,
	"DELETE /api/tokens/{id}": RoleAdmin,

	// The audit log: who did what, admin only.
	"GET /api/audit": RoleAdmin,
}

// requiredRole is the least role r's route needs. The route is found again from the root router:
// requireSession runs before a mounted sub-router has matched, so the request's own route
// pattern is not complete yet.
func (s *Server) requiredRole(r *http.Request) string {
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	pattern, _ := s.findRoute(method, path)
	if pattern == "" {
		return RoleAdmin
	}
	if role, ok := routeRoles[method+" "+pattern]; ok {
		return role
	}
	// A request for a mounted sub-router's root without the slash (GET /api/secrets/webdav) is
	// served by its "/" route, but Find names the mount point.
	if role, ok := routeRoles[method+" "+pattern+"/"]; ok && !strings.HasSuffix(pattern, "/") {
		return role
	}
	return RoleAdmin
}

func errRoleForbidden(need string) error {
	return respond.Forbidden("forbidden", "your role does not allow this; it needs "+need).
		Reason("role").Param("required_role", need)
}
