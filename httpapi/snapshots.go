package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/engine/snapshots"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Snapshot listing bounds (hub.md §5).
const (
	defaultSnapshotLimit = 50
	maxSnapshotLimit     = 200
	maxBulkDelete        = 200
	maxTaskEvents        = 200
	maxReasonLen         = 200
)

// snapshotRoutes: a job's snapshots, their deletion queue and the job's retention policy.
func (s *Server) snapshotRoutes(r chi.Router) {
	if s.cfg.Snapshots == nil {
		return
	}
	r.Get("/jobs/{id}/snapshots", s.listSnapshots)
	r.Post("/jobs/{id}/snapshots/delete", s.bulkDeleteSnapshots)
	r.Get("/jobs/{id}/snapshots/{run_id}", s.getSnapshot)
	r.Post("/jobs/{id}/snapshots/{run_id}/pin", s.pinSnapshot(true))
	r.Post("/jobs/{id}/snapshots/{run_id}/unpin", s.pinSnapshot(false))
	r.Post("/jobs/{id}/snapshots/{run_id}/delete", s.deleteSnapshot)
	r.Get("/jobs/{id}/snapshots/{run_id}/delete-task", s.getDeleteTask)
	r.Get("/jobs/{id}/snapshots/{run_id}/delete-events", s.getDeleteEvents)
	r.Post("/jobs/{id}/snapshots/{run_id}/delete/retry-now", s.retryDeleteNow)
	r.Post("/jobs/{id}/snapshots/{run_id}/delete/ignore", s.ignoreDelete)
	s.retentionRoutes(r)
}

// snapshotJSON is a snapshot as the API shows it.
type snapshotJSON struct {
	storage.RunArtifact
	TargetSnapshot json.RawMessage  `json:"target_snapshot"`
	DeleteTask     *deleteTaskBrief `json:"delete_task,omitempty"`
}

// deleteTaskBrief summarises a snapshot's delete task in listings.
type deleteTaskBrief struct {
	Status        string  `json:"status"`
	Attempts      int     `json:"attempts"`
	LastAttemptAt *int64  `json:"last_attempt_at"`
	NextAttemptAt int64   `json:"next_attempt_at"`
	LastErrorKind *string `json:"last_error_kind"`
	LastError     *string `json:"last_error"`
	IgnoredAt     *int64  `json:"ignored_at"`
}

func toSnapshotJSON(a storage.RunArtifact, task *storage.Task) snapshotJSON {
	out := snapshotJSON{RunArtifact: a, TargetSnapshot: rawOrNull(a.TargetSnapshotJSON)}
	if task != nil {
		out.DeleteTask = &deleteTaskBrief{Status: task.Status, Attempts: task.Attempts, LastAttemptAt: task.LastAttemptAt,
			NextAttemptAt: task.NextAttemptAt, LastErrorKind: task.LastErrorKind, LastError: task.LastError, IgnoredAt: task.IgnoredAt}
	}
	return out
}

// rawOrNull keeps a stored JSON document as is, or null when it is empty or not JSON.
func rawOrNull(s string) json.RawMessage {
	if s == "" || !json.Valid([]byte(s)) {
		return json.RawMessage("null")
	}
	return json.RawMessage(s)
}

func rawPtr(s *string) json.RawMessage {
	if s == nil {
		return json.RawMessage("null")
	}
	return rawOrNull(*s)
}

// encodeCursor makes the opaque keyset cursor of a snapshot page.
func encodeCursor(c storage.SnapshotCursor) string { return encodeKeyset(c.EndedAt, c.RunID) }

func decodeCursor(s string) (storage.SnapshotCursor, bool) {
	at, id, ok := decodeKeyset(s)
	return storage.SnapshotCursor{EndedAt: at, RunID: id}, ok
}

// encodeKeyset makes an opaque keyset cursor from the (time, id) of the last item of a page.
func encodeKeyset(at int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at, 10) + ":" + id))
}

func decodeKeyset(s string) (int64, string, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, "", false
	}
	at, id, ok := strings.Cut(string(raw), ":")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" || n < 0 {
		return 0, "", false
	}
	return n, id, true
}

// jobFor loads the job of a snapshot route, answering 404 job_not_found for a missing one.
func (s *Server) jobFor(w http.ResponseWriter, r *http.Request) (storage.Job, bool) {
	j, err := s.db.Reader().GetJob(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		respond.Error(w, r, jobError(err))
		return j, false
	}
	return j, true
}

func snapshotNotFound() error { return respond.NotFound("snapshot_not_found", "snapshot not found") }

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	job, ok := s.jobFor(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := defaultSnapshotLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			respond.Error(w, r, respond.BadRequest("invalid_limit", "limit must be a number from 1 to 200").Param("limit", v))
			return
		}
		limit = min(max(n, 1), maxSnapshotLimit)
	}
	status := strings.TrimSpace(q.Get("status"))
	switch status {
	case "", storage.SnapshotPresent, storage.SnapshotDeleting, storage.SnapshotDeleted, storage.SnapshotMissing, storage.SnapshotError:
	default:
		respond.Error(w, r, respond.BadRequest("invalid_status", "status must be present, deleting, deleted, missing or error").Field("status"))
		return
	}
	cur := storage.FirstSnapshotPage
	if v := q.Get("cursor"); v != "" {
		c, ok := decodeCursor(v)
		if !ok {
			respond.Error(w, r, respond.BadRequest("invalid_cursor", "cursor is not one this API handed out").Field("cursor"))
			return
		}
		cur = c
	}
	ctx := r.Context()
	var items []snapshotJSON
	var next *string
	err := s.db.Read(ctx, func(rq storage.Q) error {
		page, err := rq.ListSnapshots(ctx, job.ID, status, cur, limit+1)
		if err != nil {
			return err
		}
		if len(page) > limit {
			page = page[:limit]
			last := page[len(page)-1]
			c := encodeCursor(storage.SnapshotCursor{EndedAt: last.EndedAt, RunID: last.RunID})
			next = &c
		}
		items = make([]snapshotJSON, 0, len(page))
		for _, a := range page {
			var task *storage.Task
			if a.Status != storage.SnapshotPresent {
				t, err := rq.GetTask(ctx, storage.DeleteQueue, a.RunID)
				if err == nil {
					task = &t
				} else if !errors.Is(err, storage.ErrNotFound) {
					return err
				}
			}
			items = append(items, toSnapshotJSON(a, task))
		}
		return nil
	})
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, map[string]any{"items": items, "next_cursor": next})
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	job, ok := s.jobFor(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	runID := chi.URLParam(r, "run_id")
	a, err := s.db.Reader().GetRunArtifact(ctx, job.ID, runID)
	if errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, snapshotNotFound())
		return
	}
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	var task *storage.Task
	if t, err := s.db.Reader().GetTask(ctx, storage.DeleteQueue, runID); err == nil {
		task = &t
	} else if !errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, toSnapshotJSON(a, task))
}

func (s *Server) pinSnapshot(pin bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		job, ok := s.jobFor(w, r)
		if !ok {
			return
		}
		uid := UserID(r)
		err := s.db.Writer().SetSnapshotPinned(r.Context(), job.ID, chi.URLParam(r, "run_id"), pin, &uid, s.now().Unix())
		if errors.Is(err, storage.ErrNotFound) {
			respond.Error(w, r, snapshotNotFound())
			return
		}
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		respond.NoContent(w)
	}
}

func parseForce(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("force")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, respond.BadRequest("invalid_force", "force must be true or false").Param("force", v)
	}
	return b, nil
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	job, ok := s.jobFor(w, r)
	if !ok {
		return
	}
	force, err := parseForce(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if err := s.requestDelete(r, job.ID, chi.URLParam(r, "run_id"), force); err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.NoContent(w)
}

func (s *Server) requestDelete(r *http.Request, jobID, runID string, force bool) error {
	err := s.cfg.Snapshots.RequestDelete(r.Context(), jobID, runID, force)
	switch {
	case errors.Is(err, snapshots.ErrNotFound):
		return snapshotNotFound()
	case errors.Is(err, snapshots.ErrPinned):
		return respond.Conflict("snapshot_pinned", "the snapshot is pinned; unpin it or delete with force=true").Param("run_id", runID)
	}
	return err
}

type bulkDeleteBody struct {
	RunIDs []string `json:"run_ids"`
	Force  bool     `json:"force"`
}

func (s *Server) bulkDeleteSnapshots(w http.ResponseWriter, r *http.Request) {
	job, ok := s.jobFor(w, r)
	if !ok {
		return
	}
	var body bulkDeleteBody
	if err := respond.DecodeJSON(r, &body); err != nil {
		respond.Error(w, r, err)
		return
	}
	seen := map[string]bool{}
	var ids []string
	for _, id := range body.RunIDs {
		if id = strings.TrimSpace(id); id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		respond.Error(w, r, respond.BadRequest("empty_run_ids", "run_ids must name at least one snapshot").Field("run_ids"))
		return
	}
	if len(ids) > maxBulkDelete {
		respond.Error(w, r, respond.BadRequest("too_many_run_ids", fmt.Sprintf("at most %d run_ids per request", maxBulkDelete)).
			Field("run_ids").Param("max", maxBulkDelete))
		return
	}
	// Check them all first, so that one unknown or pinned snapshot queues nothing.
	ctx := r.Context()
	for _, id := range ids {
		a, err := s.db.Reader().GetRunArtifact(ctx, job.ID, id)
		if errors.Is(err, storage.ErrNotFound) {
			respond.Error(w, r, respond.NotFound("snapshot_not_found", "snapshot not found").Param("run_id", id))
			return
		}
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		if a.PinnedAt != nil && !body.Force && a.Status != storage.SnapshotDeleted && a.Status != storage.SnapshotMissing {
			respond.Error(w, r, respond.Conflict("snapshot_pinned", "a snapshot is pinned; unpin it or delete with force").Param("run_id", id))
			return
		}
	}
	for _, id := range ids {
		if err := s.requestDelete(r, job.ID, id, body.Force); err != nil {
			respond.Error(w, r, err)
			return
		}
	}
	respond.NoContent(w)
}

// taskJSON is a queue task with its stored target as an object.
type taskJSON struct {
	storage.Task
	TargetSnapshot json.RawMessage `json:"target_snapshot"`
}

type taskEventJSON struct {
	RunID string `json:"run_id"`
	storage.TaskEvent
	Fields json.RawMessage `json:"fields"`
}

func toTaskEvents(runID string, evs []storage.TaskEvent) []taskEventJSON {
	out := make([]taskEventJSON, 0, len(evs))
	for _, e := range evs {
		out = append(out, taskEventJSON{RunID: runID, TaskEvent: e, Fields: rawPtr(e.FieldsJSON)})
	}
	return out
}

// deleteTaskFor loads the delete task of a job's snapshot, answering 404 when either is missing.
func (s *Server) deleteTaskFor(w http.ResponseWriter, r *http.Request) (storage.Task, bool) {
	job, ok := s.jobFor(w, r)
	if !ok {
		return storage.Task{}, false
	}
	t, err := s.db.Reader().GetTask(r.Context(), storage.DeleteQueue, chi.URLParam(r, "run_id"))
	if errors.Is(err, storage.ErrNotFound) || (err == nil && t.JobID != job.ID) {
		respond.Error(w, r, respond.NotFound("delete_task_not_found", "this snapshot has no delete task"))
		return t, false
	}
	if err != nil {
		respond.Error(w, r, err)
		return t, false
	}
	return t, true
}

func (s *Server) getDeleteTask(w http.ResponseWriter, r *http.Request) {
	t, ok := s.deleteTaskFor(w, r)
	if !ok {
		return
	}
	respond.JSON(w, http.StatusOK, taskJSON{Task: t, TargetSnapshot: rawOrNull(t.TargetSnapshotJSON)})
}

func (s *Server) getDeleteEvents(w http.ResponseWriter, r *http.Request) {
	t, ok := s.deleteTaskFor(w, r)
	if !ok {
		return
	}
	evs, err := s.db.Reader().ListTaskEvents(r.Context(), storage.DeleteQueue, t.RunID, maxTaskEvents)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, toTaskEvents(t.RunID, evs))
}

func (s *Server) retryDeleteNow(w http.ResponseWriter, r *http.Request) {
	t, ok := s.deleteTaskFor(w, r)
	if !ok {
		return
	}
	if err := s.taskRetryNow(r, storage.DeleteQueue, t.RunID, true); err != nil {
		respond.Error(w, r, err)
		return
	}
	s.cfg.Snapshots.WakeDeletes()
	respond.NoContent(w)
}

func (s *Server) ignoreDelete(w http.ResponseWriter, r *http.Request) {
	t, ok := s.deleteTaskFor(w, r)
	if !ok {
		return
	}
	if err := s.taskIgnore(r, storage.DeleteQueue, t.RunID); err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.NoContent(w)
}

// taskRetryNow makes a task due now (attempts reset) and logs who asked; for the delete queue the
// snapshot goes back to deleting.
func (s *Server) taskRetryNow(r *http.Request, tq storage.TaskQueue, runID string, snapshot bool) error {
	ctx := r.Context()
	now := s.now().Unix()
	err := s.db.Write(ctx, func(q storage.Q) error {
		if err := q.RetryTaskNow(ctx, tq, runID, now); err != nil {
			return err
		}
		if snapshot {
			if err := q.SetSnapshotStatus(ctx, runID, storage.SnapshotDeleting, nil, nil, now); err != nil {
				return err
			}
		}
		return q.AppendTaskEvent(ctx, tq, runID, taskEvent(now, "retry_now", "retry now requested", map[string]any{"user_id": UserID(r)}))
	})
	return taskActionError(err, "not_retryable", "the task cannot be retried in its current status")
}

type ignoreBody struct {
	Reason *string `json:"reason"`
}

func (s *Server) taskIgnore(r *http.Request, tq storage.TaskQueue, runID string) error {
	var body ignoreBody
	if err := decodeOptionalJSON(r, &body); err != nil {
		return err
	}
	var reason *string
	if body.Reason != nil {
		if v := strings.TrimSpace(*body.Reason); v != "" {
			if len(v) > maxReasonLen {
				v = truncateUTF8(v, maxReasonLen) + "…"
			}
			reason = &v
		}
	}
	ctx := r.Context()
	now := s.now().Unix()
	uid := UserID(r)
	err := s.db.Write(ctx, func(q storage.Q) error {
		if err := q.IgnoreTask(ctx, tq, runID, &uid, reason, now); err != nil {
			return err
		}
		return q.AppendTaskEvent(ctx, tq, runID, taskEvent(now, "ignored", "ignored by user", map[string]any{"user_id": uid, "reason": reason}))
	})
	return taskActionError(err, "not_ignorable", "the task cannot be ignored in its current status")
}

func taskActionError(err error, stateCode, stateMsg string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrTaskRunning):
		return respond.Conflict("task_running", "the task is running; try again when this attempt ends")
	case errors.Is(err, storage.ErrTaskState):
		return respond.Conflict(stateCode, stateMsg)
	}
	return err
}

func taskEvent(ts int64, kind, msg string, fields map[string]any) storage.TaskEvent {
	e := storage.TaskEvent{TS: ts, Level: "info", Kind: kind, Message: msg}
	if b, err := json.Marshal(fields); err == nil {
		f := string(b)
		e.FieldsJSON = &f
	}
	return e
}

// decodeOptionalJSON is respond.DecodeJSON for a body that may be absent: an empty body leaves v
// as it is.
func decodeOptionalJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return respond.DecodeJSON(r, v)
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
