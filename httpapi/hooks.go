package httpapi

import (
	"net/http"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/httpapi/respond"
)

// authorizeHooks is the one check on who may set or change a job's hooks: they are commands the
// Hub (or an agent that allows hooks) runs as its own user, so they need more than the right to
// edit a job. A request that leaves the hooks as they were passes, so that whoever may edit a job
// can still change its other fields. old is nil for a new job.
func authorizeHooks(r *http.Request, old, updated *jobspec.Spec) error {
	if jobspec.SameHooks(old, updated) || hasRole(r, RoleAdmin) {
		return nil
	}
	return respond.Forbidden("hooks_forbidden", "only an administrator can set or change a job's hooks").
		Reason("not_allowed").Field("spec.hooks")
}
