package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

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

// pageParams reads page and page_size (hub.md §5): page ≥ 1, page_size default 20 clamped to 100;
// neither sent means everything (up to max).
func pageParams(r *http.Request, max int) (limit, offset, page, size int, err error) {
	q := r.URL.Query()
	ps, ss := q.Get("page"), q.Get("page_size")
	if ps == "" && ss == "" {
		return max, 0, 1, max, nil
	}
	page, size = 1, 20
	if ps != "" {
		if page, err = strconv.Atoi(ps); err != nil || page < 1 {
			return 0, 0, 0, 0, respond.BadRequest("invalid_page", "page must be a number ≥ 1").Field("page")
		}
	}
	if ss != "" {
		if size, err = strconv.Atoi(ss); err != nil || size < 1 {
			return 0, 0, 0, 0, respond.BadRequest("invalid_page_size", "page_size must be a number ≥ 1").Field("page_size")
		}
		size = min(size, 100)
	}
	return size, (page - 1) * size, page, size, nil
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
	switch f.TargetType {
	case "", "local_dir", "webdav":
	default:
		respond.Error(w, r, respond.BadRequest("invalid_target_type", "target_type must be local_dir or webdav").Field("target_type"))
		return
	}
	limit, offset, page, size, err := pageParams(r, 10000)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	tasks, total, err := s.db.Reader().ListTasksFiltered(r.Context(), storage.CleanupQueue, f, limit, offset)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	items := make([]taskJSON, 0, len(tasks))
	for _, t := range tasks {
		items = append(items, taskJSON{Task: t, TargetSnapshot: rawOrNull(t.TargetSnapshotJSON)})
	}
	if r.URL.Query().Get("page_size") == "" && r.URL.Query().Get("page") == "" {
		size = len(items)
	}
	respond.JSON(w, http.StatusOK, map[string]any{"items": items, "page": page, "page_size": size, "total": total})
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
	respond.JSON(w, http.StatusOK, map[string]any{
		"task":   taskJSON{Task: t, TargetSnapshot: rawOrNull(t.TargetSnapshotJSON)},
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
