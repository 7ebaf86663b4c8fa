package httpapi

import (
	"errors"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// cleanupTaskJSON is a cleanup task as the original serves it: with its job's name ("" once the
// job is gone).
type cleanupTaskJSON struct {
	taskJSON
	JobName string `json:"job_name"`
}

// maxCleanupTasks caps an unpaged list of cleanup tasks.
const maxCleanupTasks = 10000

// maintenanceRoutes: the incomplete-run cleanup queue.
func (s *Server) maintenanceRoutes(r chi.Router) {
	if s.cfg.Snapshots == nil {
		return
	}
	r.Get("/maintenance/incomplete-cleanup", s.listCleanupTasks)
	r.Get("/maintenance/incomplete-cleanup/{run_id}", s.getCleanupTask)
	r.Post("/maintenance/incomplete-cleanup/{run_id}/retry-now", s.retryCleanupNow)
	r.Post("/maintenance/incomplete-cleanup/{run_id}/ignore", s.ignoreCleanup)
	r.Post("/maintenance/incomplete-cleanup/{run_id}/unignore", s.unignoreCleanup)
}

func (s *Server) listCleanupTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := storage.TaskFilter{Status: q.Get("status"), JobID: q.Get("job_id"), NodeID: q.Get("node_id"), TargetType: q.Get("target_type")}
	switch f.Status {
	case "", storage.TaskQueued, storage.TaskRunning, storage.TaskRetrying, storage.TaskBlocked, storage.TaskDone,
		storage.TaskIgnored, storage.TaskAbandoned:
	default:
		respond.Error(w, r, respond.BadRequest("invalid_status", "unknown task status").Field("status"))
		return
	}
	if _, known := all.Registry.Lookup(f.TargetType); f.TargetType != "" && !known {
		respond.Error(w, r, respond.BadRequest("invalid_target_type", "target_type must be "+all.Registry.TypeList()).Field("target_type"))
		return
	}
	pg, err := readPage(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	limit, offset := maxCleanupTasks, 0 // neither page nor page_size: everything (up to the cap)
	if pg.paged {
		limit, offset = pg.size, pg.offset()
	}
	tasks, total, err := s.db.Reader().ListTasksFiltered(r.Context(), storage.CleanupQueue, f, limit, offset)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	ids := make([]string, 0, len(tasks))
	for _, t := range tasks {
		ids = append(ids, t.JobID)
	}
	names, err := s.db.Reader().JobNames(r.Context(), ids)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	items := make([]cleanupTaskJSON, 0, len(tasks))
	for _, t := range tasks {
		items = append(items, cleanupTaskJSON{taskJSON{Task: t, TargetSnapshot: rawOrNull(t.TargetSnapshotJSON)}, names[t.JobID]})
	}
	size := pg.size
	if !pg.paged {
		size = len(items)
	}
	respond.JSON(w, http.StatusOK, map[string]any{"items": items, "page": pg.page, "page_size": size, "total": total})
}

func (s *Server) cleanupTaskFor(w http.ResponseWriter, r *http.Request) (storage.Task, bool) {
	t, err := s.db.Reader().GetTask(r.Context(), storage.CleanupQueue, chi.URLParam(r, "run_id"))
	if errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, respond.NotFound("cleanup_task_not_found", "no cleanup task for this run"))
		return t, false
	}
	if err != nil {
		respond.Error(w, r, err)
		return t, false
	}
	return t, true
}

func (s *Server) getCleanupTask(w http.ResponseWriter, r *http.Request) {
	t, ok := s.cleanupTaskFor(w, r)
	if !ok {
		return
	}
	evs, err := s.db.Reader().ListTaskEvents(r.Context(), storage.CleanupQueue, t.RunID, maxTaskEvents)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	names, err := s.db.Reader().JobNames(r.Context(), []string{t.JobID})
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, map[string]any{
		"task":   cleanupTaskJSON{taskJSON{Task: t, TargetSnapshot: rawOrNull(t.TargetSnapshotJSON)}, names[t.JobID]},
		"events": toTaskEvents(t.RunID, evs),
	})
}

func (s *Server) retryCleanupNow(w http.ResponseWriter, r *http.Request) {
	t, ok := s.cleanupTaskFor(w, r)
	if !ok {
		return
	}
	if err := s.taskRetryNow(r, storage.CleanupQueue, t.RunID, false); err != nil {
		respond.Error(w, r, err)
		return
	}
	s.cfg.Snapshots.WakeCleanup()
	respond.NoContent(w)
}

func (s *Server) ignoreCleanup(w http.ResponseWriter, r *http.Request) {
	t, ok := s.cleanupTaskFor(w, r)
	if !ok {
		return
	}
	if err := s.taskIgnore(r, storage.CleanupQueue, t.RunID); err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.NoContent(w)
}

func (s *Server) unignoreCleanup(w http.ResponseWriter, r *http.Request) {
	t, ok := s.cleanupTaskFor(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	now := s.now().Unix()
	err := s.db.Write(ctx, func(q storage.Q) error {
		cur, err := q.GetTask(ctx, storage.CleanupQueue, t.RunID)
		if err != nil {
			return err
		}
		if cur.Status != storage.TaskIgnored {
			return respond.Conflict("not_ignored", "the task is not ignored")
		}
		if err := q.RetryTaskNow(ctx, storage.CleanupQueue, t.RunID, now); err != nil {
			return err
		}
		return q.AppendTaskEvent(ctx, storage.CleanupQueue, t.RunID, taskEvent(now, "unignored", "unignored by user", map[string]any{"user_id": UserID(r)}))
	})
	if err := taskActionError(err, "not_ignored", "the task is not ignored"); err != nil {
		respond.Error(w, r, err)
		return
	}
	s.cfg.Snapshots.WakeCleanup()
	respond.NoContent(w)
}
