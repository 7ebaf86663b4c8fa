package webdav

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/bastion-backup/bastion/engine/targets"
)

// CleanupRun deletes an incomplete run: HEAD complete.json first (present → skip_complete),
// then DELETE the run collection.
func (t *Target) CleanupRun(ctx context.Context, run targets.RunRef) (targets.CleanupResult, error) {
	op := "cleanup run " + run.RunID
	if err := targets.ValidateRun(run); err != nil {
		return "", newErr(targets.KindConfig, op, 0, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	_, err := t.head(ctx, "head "+targets.CompleteName, t.fileURL(run, targets.CompleteName))
	switch {
	case err == nil:
		return targets.CleanupSkipComplete, nil
	case !errors.Is(err, targets.ErrNotExist):
		return "", err
	}
	deleted, err := t.deleteTree(ctx, op, t.Location(run))
	t.forget(run)
	if err != nil {
		return "", err
	}
	if !deleted {
		return targets.CleanupSkipNotFound, nil
	}
	t.log.Info().Str("job_id", run.JobID).Str("run_id", run.RunID).Msg("deleted incomplete run")
	return targets.CleanupDeleted, nil
}

// DeleteRun deletes the run collection, complete or not.
func (t *Target) DeleteRun(ctx context.Context, run targets.RunRef) (targets.DeleteResult, error) {
	op := "delete run " + run.RunID
	if err := targets.ValidateRun(run); err != nil {
		return "", newErr(targets.KindConfig, op, 0, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	deleted, err := t.deleteTree(ctx, op, t.Location(run))
	t.forget(run)
	if err != nil {
		return "", err
	}
	if !deleted {
		return targets.DeleteNotFound, nil
	}
	return targets.DeleteDeleted, nil
}

// refusesCollectionDelete lists answers to DELETE of a collection that mean "not like this"
// rather than "not at all": 207 (some members failed), 403/405/501 (collection DELETE not
// allowed), 409 and 400. The fallback deletes member by member; a real permission problem then
// shows up on the first file.
func refusesCollectionDelete(status int) bool {
	switch status {
	case http.StatusMultiStatus, http.StatusForbidden, http.StatusMethodNotAllowed,
		http.StatusNotImplemented, http.StatusConflict, http.StatusBadRequest:
		return true
	}
	return false
}

// deleteTree deletes collection u; deleted is false when it did not exist.
func (t *Target) deleteTree(ctx context.Context, op, u string) (deleted bool, err error) {
	status, err := t.delete(ctx, op, u)
	if err != nil {
		return false, err
	}
	switch {
	case status == http.StatusNotFound || status == http.StatusGone:
		return false, nil
	case refusesCollectionDelete(status):
		t.log.Info().Str("collection", urlPath(u)).Int("http_status", status).
			Msg("server refused to delete the collection at once; deleting its members one by one")
		return t.walkDelete(ctx, op, u)
	case status/100 == 2:
		return true, nil
	}
	return false, statusCodeErr(op, status)
}

// walkDelete lists collection root recursively (at most maxWalkEntries members), deletes every
// file, then the collections deepest first.
func (t *Target) walkDelete(ctx context.Context, op, root string) (bool, error) {
	var files []string
	dirs := []string{root}
	for i := 0; i < len(dirs); i++ {
		entries, err := t.propfind(ctx, op, dirs[i])
		if errors.Is(err, targets.ErrNotExist) {
			if i == 0 {
				return false, nil
			}
			continue
		}
		if err != nil {
			return false, err
		}
		for _, e := range entries {
			if len(files)+len(dirs) > maxWalkEntries {
				return false, newErr(targets.KindUnknown, op, 0,
					fmt.Errorf("run collection has more than %d members; delete it on the server", maxWalkEntries))
			}
			if e.Kind == KindDir {
				dirs = append(dirs, dirs[i]+escapeSegment(e.Name)+"/")
			} else {
				files = append(files, dirs[i]+escapeSegment(e.Name))
			}
		}
	}
	for _, f := range files {
		status, err := t.delete(ctx, op, f)
		if err != nil {
			return false, err
		}
		if status/100 != 2 && status != http.StatusNotFound {
			return false, statusCodeErr("delete "+urlPath(f), status)
		}
	}
	// Children were appended after their parents, so walking backwards empties each first.
	for i := len(dirs) - 1; i >= 0; i-- {
		status, err := t.delete(ctx, op, dirs[i])
		if err != nil {
			return false, err
		}
		if status/100 != 2 && status != http.StatusNotFound {
			// The files are gone; an empty collection the server will not remove is harmless.
			t.log.Warn().Str("collection", urlPath(dirs[i])).Int("http_status", status).Msg("could not delete empty collection")
		}
	}
	return true, nil
}

// delete sends DELETE with retries. It returns the status for 2xx, 404/410 and the refusals
// the caller interprets; other answers are errors.
func (t *Target) delete(ctx context.Context, op, u string) (int, error) {
	var status int
	err := t.once(func() (time.Duration, bool, error) {
		x, err := t.send(ctx, op, http.MethodDelete, u, nil, 0, nil)
		if err != nil {
			return 0, false, err
		}
		defer x.discard()
		status = x.resp.StatusCode
		if status/100 == 2 || status == http.StatusNotFound || status == http.StatusGone || refusesCollectionDelete(status) {
			return 0, false, nil
		}
		ra, ok := t.retryAfter(x.resp)
		return ra, ok, statusErr(op, x.resp)
	})
	return status, err
}
