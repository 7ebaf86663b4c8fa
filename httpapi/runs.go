package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Run route bounds.
const (
	maxRunEvents      = 500 // GET /api/runs/{id}/events
	eventWriteTimeout = 10 * time.Second
)

// runRoutes: the runs list, run detail, cancel, and the event log (a page, and the live WebSocket).
func (s *Server) runRoutes(r chi.Router) {
	r.Get("/runs", s.listRuns) // reads the database only
	if s.cfg.Runs == nil {
		return
	}
	r.Get("/runs/{id}", s.getRun)
	r.Post("/runs/{id}/cancel", s.cancelRun)
	r.Get("/runs/{id}/events", s.listRunEvents)
	r.Get("/runs/{id}/events/ws", s.runEventsSocket)
	r.Get("/runs/{id}/event-console", s.runEventConsole)
	r.Get("/runs/{id}/workspace", s.runWorkspace)
}

// runJSON is GET /api/runs/{id}.
type runJSON struct {
	ID                      string          `json:"id"`
	JobID                   string          `json:"job_id"`
	JobName                 string          `json:"job_name"`
	NodeID                  string          `json:"node_id"`
	NodeName                *string         `json:"node_name"`
	Status                  string          `json:"status"`
	StartedAt               int64           `json:"started_at"`
	EndedAt                 *int64          `json:"ended_at"`
	CancelRequestedAt       *int64          `json:"cancel_requested_at"`
	CancelRequestedByUserID *int64          `json:"cancel_requested_by_user_id"`
	CancelReason            *string         `json:"cancel_reason"`
	Progress                json.RawMessage `json:"progress"`
	Summary                 json.RawMessage `json:"summary"`
	TargetSnapshot          json.RawMessage `json:"target_snapshot"`
	Error                   *string         `json:"error"`
}

func (s *Server) runDetail(ctx context.Context, id string) (runJSON, error) {
	d, err := s.db.Reader().GetRunDetail(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return runJSON{}, respond.NotFound("run_not_found", "run not found")
	}
	if err != nil {
		return runJSON{}, err
	}
	out := runJSON{
		ID: d.ID, JobID: d.JobID, JobName: d.JobName, NodeID: "hub", NodeName: ptrTo("hub"), Status: d.Status,
		StartedAt: d.StartedAt, EndedAt: d.EndedAt, CancelRequestedAt: d.CancelRequestedAt,
		CancelRequestedByUserID: d.CancelRequestedByUserID, CancelReason: d.CancelReason,
		Progress: rawPtr(d.ProgressJSON), Summary: rawPtr(d.SummaryJSON),
		TargetSnapshot: rawPtr(d.TargetSnapshotJSON), Error: d.Error,
	}
	if d.AgentID != nil {
		out.NodeID, out.NodeName = *d.AgentID, d.AgentName
	}
	return out, nil
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	out, err := s.runDetail(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, out)
}

// cancelRun records a cancel request (once) and answers the run as it stands: canceled when it
// was queued, still running (canceling) otherwise, unchanged when it had ended.
func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	var b cancelBody // shared with operations: {reason?}
	if err := decodeOptionalJSON(r, &b); err != nil {
		respond.Error(w, r, err)
		return
	}
	var reason *string
	if v := truncateUTF8(strings.TrimSpace(b.Reason), maxReasonLen); v != "" {
		reason = &v
	}
	uid := UserID(r)
	_, err := s.cfg.Runs.Cancel(r.Context(), id, &uid, reason)
	if errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, respond.NotFound("run_not_found", "run not found"))
		return
	}
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("run_id", id).Msg("run cancel requested")
	s.getRun(w, r)
}

// eventJSON is a run event as the API sends it.
type eventJSON struct {
	RunID   string          `json:"run_id"`
	Seq     int64           `json:"seq"`
	TS      int64           `json:"ts"`
	Level   string          `json:"level"`
	Kind    string          `json:"kind"`
	Message string          `json:"message"`
	Fields  json.RawMessage `json:"fields"`
}

func eventOut(e storage.RunEvent) eventJSON {
	return eventJSON{RunID: e.RunID, Seq: e.Seq, TS: e.TS, Level: e.Level, Kind: e.Kind, Message: e.Message, Fields: rawPtr(e.FieldsJSON)}
}

func (s *Server) runExists(w http.ResponseWriter, r *http.Request, id string) bool {
	if _, err := s.db.Reader().GetRun(r.Context(), id); errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, respond.NotFound("run_not_found", "run not found"))
		return false
	} else if err != nil {
		respond.Error(w, r, err)
		return false
	}
	return true
}

// readAfter reads the optional after parameter of an event page or stream: the sequence number
// the client already has (0 when absent).
// readAfter reads the last sequence number the client has: after, or after_seq (the original
// accepts both; a reconnecting client of the original sends after_seq). after wins if both come.
func readAfter(r *http.Request) (int64, error) {
	q := r.URL.Query()
	name := "after"
	if q.Get(name) == "" {
		name = "after_seq"
	}
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, respond.BadRequest("invalid_after", name+" must be a sequence number ≥ 0").Field(name)
	}
	return n, nil
}

func (s *Server) listRunEvents(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if !s.runExists(w, r, id) {
		return
	}
	evs, err := s.db.Reader().ListRunEvents(r.Context(), id, 0, maxRunEvents)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	out := make([]eventJSON, 0, len(evs))
	for _, e := range evs {
		out = append(out, eventOut(e))
	}
	respond.JSON(w, http.StatusOK, out)
}

// runEventsSocket streams a run's events over a WebSocket, one JSON event per text message:
// every event with seq > after, then live ones, without gaps or duplicates. It closes with 1000
// once the run is over and everything was sent; a client reconnects with after = its last seq.
func (s *Server) runEventsSocket(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	after, err := readAfter(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if err := checkOrigin(r, middleware.GetClient(r), s.cfg.PublicBaseURL); err != nil {
		respond.Error(w, r, err)
		return
	}
	if !s.runExists(w, r, id) {
		return
	}
	// The Origin was checked above against the rules of hub.md §3 (proxies included), which the
	// library's same-host check does not know.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept answered the client
	}
	log := zerolog.Ctx(r.Context()).With().Str("run_id", id).Logger()
	ctx := c.CloseRead(r.Context()) // ends when the client closes or goes away
	ctx, stop := s.whileSignedIn(ctx, r)
	defer stop()
	err = s.cfg.Runs.Stream(ctx, id, after, func(evs []storage.RunEvent) error {
		for _, e := range evs {
			b, err := json.Marshal(eventOut(e))
			if err != nil {
				return err
			}
			wctx, cancel := context.WithTimeout(ctx, eventWriteTimeout)
			err = c.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if ctx.Err() != nil {
		closeEnded(ctx, c)
		return
	}
	if err != nil {
		log.Warn().Err(err).Msg("run event stream failed")
		c.Close(websocket.StatusInternalError, "stream failed")
		return
	}
	// The run is over and everything is sent. Closing at once would make a client that reconnects
	// on close (the original's UI) loop about once a second; like the original, hold the socket
	// for a grace period, then say why it closes.
	grace := s.runEventsGrace()
	if grace <= 0 {
		c.Close(websocket.StatusNormalClosure, "run finished")
		return
	}
	t := s.clock.NewTimer(grace)
	defer t.Stop()
	select {
	case <-ctx.Done():
		closeEnded(ctx, c)
		return
	case <-t.C():
	}
	c.Close(websocket.StatusNormalClosure, fmt.Sprintf("run finished; closed after a %s grace period", grace))
}

// closeEnded closes a socket whose context ended: with 1008 saying why when the credentials that
// opened it ended, at once when the client went away.
func closeEnded(ctx context.Context, c *websocket.Conn) {
	if errors.Is(context.Cause(ctx), errSignedOut) {
		c.Close(websocket.StatusPolicyViolation, "signed out")
		return
	}
	c.CloseNow()
}

// DefaultRunEventsGrace is how long the run-events WebSocket stays open after the run ended and
// every event was sent (the original's figure).
const DefaultRunEventsGrace = 30 * time.Second

func (s *Server) runEventsGrace() time.Duration {
	switch g := s.cfg.RunEventsGrace; {
	case g == 0:
		return DefaultRunEventsGrace
	case g < 0:
		return 0
	default:
		return g
	}
}

// checkOrigin implements the run-events WebSocket origin rule: the Origin header is required and
// its (scheme, host, port) must equal the Hub's own — the request's Host, with the scheme of
// X-Forwarded-Proto when the peer is a trusted proxy, else HTTPS detection — or the origin of
// --public-base-url when it is set; ws≡http, wss≡https, default ports 80/443.
//
// X-Forwarded-Host is not believed, even from a trusted proxy (hub.md §3 says otherwise): a proxy
// that passes on whatever the client sent in that header would let any page that can make the
// browser send it open the socket with the user's cookie. A proxy that rewrites Host needs
// --public-base-url instead.
func checkOrigin(r *http.Request, client middleware.Client, publicBaseURL string) error {
	bad := respond.Unauthorized("invalid_origin", "the WebSocket origin does not match this Hub")
	raw := r.Header.Get("Origin")
	if raw == "" {
		return bad
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return bad
	}
	got, ok := origin(u.Scheme, u.Host)
	if !ok {
		return bad
	}
	scheme := "http"
	if client.HTTPS {
		scheme = "https"
	}
	if client.TrustedPeer {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p != "" {
			scheme = strings.ToLower(p)
		}
	}
	if own, ok := origin(scheme, r.Host); ok && got == own {
		return nil
	}
	if publicBaseURL != "" {
		if pu, err := url.Parse(publicBaseURL); err == nil {
			if public, ok := origin(pu.Scheme, pu.Host); ok && got == public {
				return nil
			}
		}
	}
	return bad
}

// origin is a normalised (scheme, host, port).
func origin(scheme, hostport string) ([3]string, bool) {
	sc, h, p, ok := originParts(scheme, hostport)
	return [3]string{sc, h, p}, ok
}

func firstValue(h string) string {
	v, _, _ := strings.Cut(h, ",")
	return strings.TrimSpace(v)
}

// originParts normalises a scheme and host[:port]: ws→http, wss→https, default ports filled in,
// host lower-cased.
func originParts(scheme, hostport string) (string, string, string, bool) {
	switch strings.ToLower(scheme) {
	case "http", "ws":
		scheme = "http"
	case "https", "wss":
		scheme = "https"
	default:
		return "", "", "", false
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	return scheme, host, port, host != ""
}
