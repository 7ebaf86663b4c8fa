package httpapi

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	chimw "github.com/go-chi/chi/v5/middleware"

	"github.com/bastion-backup/bastion/httpapi/audit"
	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// The audit log records every request that may change something: any method other than GET, HEAD
// and OPTIONS under /api (except readOnlyPOSTs, which change and contact nothing) and POST
// /agent/enroll, whether it succeeded, was refused or failed. Logins (ok and failed), logouts and
// setup are such requests. See docs/operations.md#audit-log for the row format.
//
// auditTrail sits in the server-wide chain right after the access log (outside Recover, so a
// panic is recorded as its 500, and outside the HTTPS, host and content-type gates, so their
// refusals are recorded too). It learns the actor from the request's audit.Note, which
// auditPrincipal (right after requireSession) and the login, logout, setup and enrollment
// handlers fill. The entry is queued after the handler returned and written in the background
// (audit.Recorder): recording never delays or fails a request.

// Bounds of what one audit row keeps from the URL.
const (
	maxAuditParamLen = 128
	maxAuditParams   = 4
)

// auditTrail records the audited requests; see above.
func (s *Server) auditTrail(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !audited(r) {
			next.ServeHTTP(w, r)
			return
		}
		r, note := audit.Start(r)
		ww := chimw.NewWrapResponseWriter(w, r.ProtoMajor)
		returned := false
		defer func() {
			// A panic Recover answered is its 500 here; one that got past it (http.ErrAbortHandler:
			// the answer was cut off) still gets its row, as an error.
			status := ww.Status()
			switch {
			case !returned && status < 500:
				status = http.StatusInternalServerError
			case status == 0:
				status = http.StatusOK // nothing written: net/http answers 200
			}
			s.recordAudit(r, note, status)
		}()
		next.ServeHTTP(ww, r)
		returned = true
	})
}

func audited(r *http.Request) bool {
	if safeMethod(r.Method) {
		return false
	}
	return strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/agent/enroll"
}

// recordAudit queues the row of a finished request.
func (s *Server) recordAudit(r *http.Request, note *audit.Note, status int) {
	pattern, params := s.auditRoute(r)
	if readOnlyPOSTs[pattern] {
		return
	}
	e := storage.AuditEntry{
		At:        s.now().Unix(),
		ActorKind: storage.ActorAnonymous,
		ClientIP:  clientKey(r),
		Action:    middleware.Method(r.Method) + " " + pattern,
		RequestID: respond.RequestID(r.Context()),
		Status:    status,
		Outcome:   auditOutcome(status),
	}
	if pattern == "" {
		e.Action = middleware.Method(r.Method) + " (no route)"
	}
	if note.ActorKind != "" {
		e.ActorKind = note.ActorKind
	}
	e.UserID = optInt(note.UserID)
	e.Username = optStr(truncateUTF8(note.Username, maxUsernameLen))
	e.TokenID = optInt(note.TokenID)
	e.TokenName = optStr(note.TokenName)
	kind, id := auditObject(pattern, params)
	if note.ObjectKind != "" {
		kind, id = note.ObjectKind, note.ObjectID
	}
	e.ObjectKind, e.ObjectID = optStr(kind), optStr(id)
	s.audit.Record(e)
}

// auditRoute is the chi pattern the request matched and its URL parameters, found again for a
// request that a middleware refused before routing (the HTTPS, host and content-type gates): the
// row then still names the route, never the raw path, which could be anything a client sent.
func (s *Server) auditRoute(r *http.Request) (string, chi.RouteParams) {
	if p := middleware.MatchedRoute(r); p != "" {
		return p, chi.RouteContext(r.Context()).URLParams
	}
	return s.findRoute(r.Method, r.URL.Path)
}

// auditOutcome sorts a status: ok below 400; denied for the refusals of who may do what
// (401, 403, 421 wrong host, 429 throttled); error for everything else.
func auditOutcome(status int) string {
	switch {
	case status < 400:
		return storage.AuditOK
	case status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusMisdirectedRequest, status == http.StatusTooManyRequests:
		return storage.AuditDenied
	}
	return storage.AuditError
}

// auditObject names the object of a request from its route: the kind is the route's first
// segment after /api ("jobs", "secrets", "agents", …), the id its URL parameters in order joined
// by "/" (a job id; "webdav/nas" for a secret), each cut to maxAuditParamLen bytes.
func auditObject(pattern string, params chi.RouteParams) (kind, id string) {
	rest, ok := strings.CutPrefix(pattern, "/api/")
	if !ok {
		return "", ""
	}
	kind, _, _ = strings.Cut(rest, "/")
	if strings.HasPrefix(kind, "{") {
		kind = ""
	}
	var vals []string
	for i, k := range params.Keys {
		if k == "*" || i >= len(params.Values) || len(vals) == maxAuditParams {
			continue
		}
		vals = append(vals, truncateUTF8(params.Values[i], maxAuditParamLen))
	}
	return kind, strings.Join(vals, "/")
}

func optInt(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

func optStr(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

// auditPrincipal copies the principal requireSession (or any authentication in front of it) put
// in the context into the request's audit note.
func (s *Server) auditPrincipal(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if note := audit.From(r); note != nil {
			if p, ok := PrincipalOf(r); ok {
				if p.TokenID != 0 {
					note.Token(p.TokenID, p.TokenName, p.UserID, p.Username)
				} else {
					note.User(p.UserID, p.Username)
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Bounds of GET /api/audit.
const (
	defaultAuditLimit = 50
	maxAuditLimit     = 200
	// auditFlushWait bounds how long a list waits for entries still being written.
	auditFlushWait = 2 * time.Second
)

var auditParams = map[string]bool{
	"user_id": true, "username": true, "action": true, "from": true, "to": true, "cursor": true, "limit": true,
}

func (s *Server) auditRoutes(r chi.Router) {
	r.Get("/audit", s.listAudit)
}

type auditJSON struct {
	ID         int64   `json:"id"`
	At         int64   `json:"at"`
	ActorKind  string  `json:"actor_kind"`
	UserID     *int64  `json:"user_id"`
	Username   *string `json:"username"`
	TokenID    *int64  `json:"token_id"`
	TokenName  *string `json:"token_name"`
	ClientIP   string  `json:"client_ip"`
	Action     string  `json:"action"`
	ObjectKind *string `json:"object_kind"`
	ObjectID   *string `json:"object_id"`
	RequestID  string  `json:"request_id"`
	Status     int     `json:"status"`
	Outcome    string  `json:"outcome"`
}

// readAuditFilter reads the query of GET /api/audit; any parameter it does not know is refused.
func readAuditFilter(r *http.Request) (storage.AuditFilter, *storage.AuditCursor, int, error) {
	var f storage.AuditFilter
	q := r.URL.Query()
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if !auditParams[name] {
			return f, nil, 0, respond.BadRequest("invalid_query", "unknown query parameter "+strconv.Quote(name)).Field(name).Reason("unknown_parameter")
		}
	}
	if v := q.Get("user_id"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return f, nil, 0, respond.BadRequest("invalid_user_id", "user_id must be a whole number ≥ 1").Field("user_id")
		}
		f.UserID = &n
	}
	f.Username, f.Action = strings.TrimSpace(q.Get("username")), strings.TrimSpace(q.Get("action"))
	if err := readTimeRange(q, &f.From, &f.To); err != nil {
		return f, nil, 0, err
	}
	limit, err := readCursorLimit(q, defaultAuditLimit, maxAuditLimit)
	if err != nil {
		return f, nil, 0, err
	}
	var cur *storage.AuditCursor
	if v := q.Get("cursor"); v != "" {
		at, idText, ok := decodeKeyset(v)
		id, err := strconv.ParseInt(idText, 10, 64)
		if !ok || err != nil || id < 1 {
			return f, nil, 0, respond.BadRequest("invalid_cursor", "cursor is not one this API handed out").Field("cursor")
		}
		cur = &storage.AuditCursor{At: at, ID: id}
	}
	return f, cur, limit, nil
}

// listAudit is GET /api/audit: the audit log, newest first, a page at a time. Administrators only (routeRoles).
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	f, cur, limit, err := readAuditFilter(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	// Show the requests made just before this one, whose rows may still be queued.
	flushCtx, cancel := context.WithTimeout(r.Context(), auditFlushWait)
	_ = s.audit.Flush(flushCtx) // a busy writer only makes the page a moment older
	cancel()
	page, err := s.db.Reader().ListAudit(r.Context(), f, cur, limit+1)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	var next *string
	if len(page) > limit {
		page = page[:limit]
		last := page[len(page)-1]
		c := encodeKeyset(last.At, strconv.FormatInt(last.ID, 10))
		next = &c
	}
	items := make([]auditJSON, 0, len(page))
	for _, e := range page {
		items = append(items, auditJSON{ID: e.ID, At: e.At, ActorKind: e.ActorKind, UserID: e.UserID, Username: e.Username,
			TokenID: e.TokenID, TokenName: e.TokenName, ClientIP: e.ClientIP, Action: e.Action, ObjectKind: e.ObjectKind,
			ObjectID: e.ObjectID, RequestID: e.RequestID, Status: e.Status, Outcome: e.Outcome})
	}
	w.Header().Set("Cache-Control", "no-store")
	respond.JSON(w, http.StatusOK, map[string]any{"items": items, "next_cursor": next})
}
