package httpapi

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

const maxOperationEvents = 500

// operationRoutes: restores, verifies and the restore picker.
func (s *Server) operationRoutes(r chi.Router) {
	if s.cfg.Operations == nil {
		return
	}
	r.Post("/runs/{id}/restore", s.startRestore)
	r.Post("/runs/{id}/verify", s.startVerify)
	r.Get("/runs/{id}/operations", s.listRunOperations)
	r.Get("/runs/{id}/entries", s.listRunEntries)
	r.Get("/operations/{id}", s.getOperation)
	r.Get("/operations/{id}/events", s.listOperationEvents)
	r.Post("/operations/{id}/cancel", s.cancelOperation)
}

// operationJSON is an operation as the API shows it.
type operationJSON struct {
	ID                string          `json:"id"`
	Kind              string          `json:"kind"`
	Status            string          `json:"status"`
	NodeID            string          `json:"node_id"`
	SubjectKind       *string         `json:"subject_kind"`
	SubjectID         *string         `json:"subject_id"`
	CreatedAt         int64           `json:"created_at"`
	StartedAt         int64           `json:"started_at"`
	EndedAt           *int64          `json:"ended_at"`
	Progress          json.RawMessage `json:"progress"`
	Summary           json.RawMessage `json:"summary"`
	Error             *string         `json:"error"`
	CancelRequestedAt *int64          `json:"cancel_requested_at"`
	CancelReason      *string         `json:"cancel_reason"`
}

func toOperationJSON(o storage.Operation) operationJSON {
	return operationJSON{ID: o.ID, Kind: o.Kind, Status: o.Status, NodeID: o.NodeID, SubjectKind: o.SubjectKind,
		SubjectID: o.SubjectID, CreatedAt: o.CreatedAt, StartedAt: o.StartedAt, EndedAt: o.EndedAt,
		Progress: rawPtr(o.ProgressJSON), Summary: rawPtr(o.SummaryJSON), Error: o.Error,
		CancelRequestedAt: o.CancelRequestedAt, CancelReason: o.CancelReason}
}

// restoreBody is POST /api/runs/{id}/restore. destination_dir is the original's older form of a
// local destination on the Hub.
type restoreBody struct {
	Destination *struct {
		Type       string `json:"type"`
		NodeID     string `json:"node_id"`
		Directory  string `json:"directory"`
		BaseURL    string `json:"base_url"`
		SecretName string `json:"secret_name"`
		Prefix     string `json:"prefix"`
	} `json:"destination"`
	DestinationDir *string `json:"destination_dir"`
	Executor       *struct {
		NodeID string `json:"node_id"`
	} `json:"executor"`
	ConflictPolicy string             `json:"conflict_policy"`
	Selection      *restore.Selection `json:"selection"`
	// KeepSpecialBits restores setuid, setgid and sticky bits; admin only (restoring a set-id program is a privilege decision).
	KeepSpecialBits *bool `json:"keep_special_bits"`
}

// operationError maps the operations service's refusals to API errors.
func operationError(err error) error {
	var ie *operations.InputError
	switch {
	case errors.Is(err, operations.ErrRunNotFound):
		return respond.NotFound("run_not_found", "run not found")
	case errors.Is(err, operations.ErrNotFound):
		return respond.NotFound("operation_not_found", "operation not found")
	case errors.Is(err, operations.ErrInvalidCursor):
		return respond.BadRequest("invalid_cursor", "cursor is not one this API handed out").Field("cursor")
	case errors.As(err, &ie):
		e := respond.BadRequest(ie.Code, ie.Message)
		if ie.Reason != "" {
			e.Reason(ie.Reason)
		}
		if ie.Field != "" {
			e.Field(ie.Field)
		}
		return e
	}
	var ae *operations.AgentError
	if errors.As(err, &ae) {
		status := http.StatusConflict // agent_offline, agent_unsupported
		if ae.Code == operations.CodeAgentTimeout {
			status = http.StatusGatewayTimeout
		}
		e := respond.New(status, ae.Code, ae.Message).Cause(err)
		if ae.Reason != "" {
			e.Reason(ae.Reason)
		}
		return e
	}
	var te *targets.Error
	if errors.As(err, &te) {
		if te.Kind == targets.KindNotFound {
			return respond.NotFound("snapshot_files_missing", "the snapshot's files are missing from its target").Cause(err)
		}
		e := respond.New(http.StatusBadGateway, "target_unavailable", "the snapshot's target could not be read: "+te.Error()).Cause(err)
		e.Param("target_error", te.Code).Param("kind", te.Kind)
		return e
	}
	return err
}

func (s *Server) startRestore(w http.ResponseWriter, r *http.Request) {
	var body restoreBody
	if err := respond.DecodeJSON(r, &body); err != nil {
		respond.Error(w, r, err)
		return
	}
	req := operations.RestoreRequest{ConflictPolicy: body.ConflictPolicy, Selection: body.Selection}
	if body.KeepSpecialBits != nil && *body.KeepSpecialBits {
		if !hasRole(r, RoleAdmin) {
			respond.Error(w, r, respond.Forbidden("keep_special_bits_forbidden",
				"only an administrator may restore setuid, setgid and sticky bits").Field("keep_special_bits"))
			return
		}
		req.KeepSpecialBits = true
	}
	switch {
	case body.Destination != nil:
		d := body.Destination
		req.Destination = operations.Destination{Type: d.Type, NodeID: d.NodeID, Directory: d.Directory,
			BaseURL: d.BaseURL, SecretName: d.SecretName, Prefix: d.Prefix}
		if d.Type == "" {
			respond.Error(w, r, respond.BadRequest("invalid_destination", "destination.type is required (local_fs or webdav)").
				Field("destination.type").Reason("required"))
			return
		}
		if d.Type == operations.DestinationWebDAV && body.Executor != nil && body.Executor.NodeID != "" {
			// A WebDAV destination is on no node: the executor writes it, with its own credential.
			if d.NodeID != "" && d.NodeID != body.Executor.NodeID {
				respond.Error(w, r, respond.BadRequest("invalid_executor", "destination.node_id and executor.node_id name different nodes").
					Field("executor.node_id"))
				return
			}
			req.Destination.NodeID = body.Executor.NodeID
		}
	case body.DestinationDir != nil:
		req.Destination = operations.Destination{Type: operations.DestinationLocalFS, Directory: *body.DestinationDir}
	default:
		respond.Error(w, r, respond.BadRequest("invalid_destination", "destination is required").Field("destination").Reason("required"))
		return
	}
	if body.Executor != nil && body.Executor.NodeID != "" && req.Destination.NodeID != "" && body.Executor.NodeID != req.Destination.NodeID &&
		req.Destination.Type != operations.DestinationWebDAV {
		respond.Error(w, r, respond.BadRequest("invalid_executor", "a local_fs restore runs on the destination's node").Field("executor.node_id"))
		return
	}
	runID := chi.URLParam(r, "id")
	op, err := s.cfg.Operations.StartRestore(r.Context(), runID, req, UserID(r))
	if err != nil {
		respond.Error(w, r, operationError(err))
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("run_id", runID).Str("operation_id", op.ID).Msg("restore started")
	respond.JSON(w, http.StatusOK, map[string]string{"op_id": op.ID})
}

func (s *Server) startVerify(w http.ResponseWriter, r *http.Request) {
	runID := chi.URLParam(r, "id")
	op, err := s.cfg.Operations.StartVerify(r.Context(), runID, UserID(r))
	if err != nil {
		respond.Error(w, r, operationError(err))
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("run_id", runID).Str("operation_id", op.ID).Msg("verify started")
	respond.JSON(w, http.StatusOK, map[string]string{"op_id": op.ID})
}

func (s *Server) listRunOperations(w http.ResponseWriter, r *http.Request) {
	runID := chi.URLParam(r, "id")
	if !s.runExists(w, r, runID) {
		return
	}
	ops, err := s.db.Reader().ListOperationsBySubject(r.Context(), operations.SubjectRun, runID, 100)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := make([]operationJSON, 0, len(ops))
	for _, o := range ops {
		out = append(out, toOperationJSON(o))
	}
	respond.JSON(w, http.StatusOK, out)
}

func (s *Server) getOperation(w http.ResponseWriter, r *http.Request) {
	o, err := s.db.Reader().GetOperation(r.Context(), chi.URLParam(r, "id"))
	if errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, respond.NotFound("operation_not_found", "operation not found"))
		return
	}
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, toOperationJSON(o))
}

type operationEventJSON struct {
	OpID string `json:"op_id"`
	storage.OperationEvent
	Fields json.RawMessage `json:"fields"`
}

func (s *Server) listOperationEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := chi.URLParam(r, "id")
	if _, err := s.db.Reader().GetOperation(ctx, id); errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, respond.NotFound("operation_not_found", "operation not found"))
		return
	} else if err != nil {
		respond.Error(w, r, err)
		return
	}
	after, err := readAfter(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	evs, err := s.db.Reader().ListOperationEvents(ctx, id, after, maxOperationEvents)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := make([]operationEventJSON, 0, len(evs))
	for _, e := range evs {
		out = append(out, operationEventJSON{OpID: id, OperationEvent: e, Fields: rawPtr(e.FieldsJSON)})
	}
	respond.JSON(w, http.StatusOK, out)
}

type cancelBody struct {
	Reason string `json:"reason"`
}

func (s *Server) cancelOperation(w http.ResponseWriter, r *http.Request) {
	var body cancelBody
	if err := decodeOptionalJSON(r, &body); err != nil {
		respond.Error(w, r, err)
		return
	}
	reason := truncateUTF8(strings.TrimSpace(body.Reason), maxReasonLen)
	o, err := s.cfg.Operations.Cancel(r.Context(), chi.URLParam(r, "id"), UserID(r), reason)
	if err != nil {
		respond.Error(w, r, operationError(err))
		return
	}
	respond.JSON(w, http.StatusOK, toOperationJSON(o))
}

// entriesResponse is one page of a snapshot directory for the restore picker. Cursors are
// offsets into the directory's filtered, sorted children.
type entriesResponse struct {
	Prefix     string          `json:"prefix"`
	Cursor     int             `json:"cursor"`
	NextCursor *int            `json:"next_cursor"`
	Total      int             `json:"total"`
	Entries    []restore.Child `json:"entries"`
}

// entriesParams are the query parameters of GET /api/runs/{id}/entries. The original's names
// (type_sort, min_size_bytes, max_size_bytes) come first; files_first, min_size and max_size are
// our earlier names, kept as aliases. Any other parameter is refused: a misspelt filter that is
// silently dropped shows the wrong files.
var entriesParams = map[string]bool{
	"prefix": true, "cursor": true, "limit": true, "q": true, "kind": true, "hide_dotfiles": true,
	"type_sort": true, "files_first": true,
	"min_size_bytes": true, "max_size_bytes": true, "min_size": true, "max_size": true,
}

func (s *Server) listRunEntries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if !entriesParams[name] {
			respond.Error(w, r, respond.BadRequest("invalid_query", "unknown query parameter "+strconv.Quote(name)).Field(name).Reason("unknown_parameter"))
			return
		}
	}
	opts := restore.ListOptions{Prefix: q.Get("prefix"), Cursor: q.Get("cursor"), Q: q.Get("q"), Kind: q.Get("kind")}
	switch opts.Kind {
	case "", "file", "dir", "symlink":
	default:
		respond.Error(w, r, respond.BadRequest("invalid_kind", "kind must be file, dir or symlink").Field("kind"))
		return
	}
	cursor := 0
	if opts.Cursor != "" {
		n, err := strconv.Atoi(opts.Cursor)
		if err != nil || n < 0 {
			respond.Error(w, r, respond.BadRequest("invalid_cursor", "cursor must be a number ≥ 0").Field("cursor"))
			return
		}
		cursor = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			respond.Error(w, r, respond.BadRequest("invalid_limit", "limit must be a number from 1 to 1000").Field("limit"))
			return
		}
		opts.Limit = n
	}
	for _, p := range []struct {
		name string
		dst  *bool
	}{{"hide_dotfiles", &opts.HideDotfiles}, {"files_first", &opts.FilesFirst}} {
		if v := q.Get(p.name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				respond.Error(w, r, respond.BadRequest("invalid_"+p.name, p.name+" must be true or false").Field(p.name))
				return
			}
			*p.dst = b
		}
	}
	if q.Has("type_sort") {
		switch q.Get("type_sort") {
		case "dir_first", "dirs_first":
			opts.FilesFirst = false
		case "file_first", "files_first":
			opts.FilesFirst = true
		default:
			respond.Error(w, r, respond.BadRequest("invalid_type_sort", "type_sort must be dir_first or file_first").Field("type_sort"))
			return
		}
	}
	for _, p := range []struct {
		name, alias string
		dst         **int64
	}{{"min_size_bytes", "min_size", &opts.MinSize}, {"max_size_bytes", "max_size", &opts.MaxSize}} {
		name := p.name
		if !q.Has(name) && q.Has(p.alias) {
			name = p.alias
		}
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				respond.Error(w, r, respond.BadRequest("invalid_"+name, name+" must be a byte count ≥ 0").Field(name))
				return
			}
			*p.dst = &n
		}
	}
	page, err := s.cfg.Operations.Entries(r.Context(), chi.URLParam(r, "id"), opts)
	if err != nil {
		respond.Error(w, r, operationError(err))
		return
	}
	resp := entriesResponse{Prefix: page.Prefix, Cursor: cursor, Total: page.Total, Entries: page.Entries}
	if page.NextCursor != "" {
		n, _ := strconv.Atoi(page.NextCursor)
		resp.NextCursor = &n
	}
	respond.JSON(w, http.StatusOK, resp)
}
