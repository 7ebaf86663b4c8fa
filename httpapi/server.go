// Package httpapi is the Hub's HTTP surface: the chi router, its middleware chain, one file per
// API resource, the static web UI and the agent socket.
//
// # Route protection
//
// Every request passes, in order: security headers (CSP, X-Frame-Options, …), request ID, client
// IP (trusted proxies), the body read deadline, access log, audit trail (audit.go: mutating
// requests only, recorded after the handler), panic recovery, body limits, the
// HTTPS gate (middleware.RequireHTTPS: plain HTTP only from loopback or with --insecure-http;
// open paths are listed in openPaths), the Host allowlist (middleware.AllowHosts: DNS
// rebinding), and the JSON Content-Type rule for request bodies (middleware.RequireJSONBody).
//
// Under /api, routes fall in two groups, and a resource picks one by where it registers:
//
//   - open routes (systemRoutes, authRoutes): no session. Add nothing here without a reason.
//   - session routes: everything registered from sessionRoutes. requireSession answers 401
//     unauthorized without a live session or a valid API token (Authorization: Bearer), 401
//     invalid_csrf when a session request other than GET/HEAD/OPTIONS lacks the session's
//     X-CSRF-Token (except the few POSTs that change and contact nothing, listed in
//     readOnlyPOSTs, auth.go), and 403 forbidden when the principal's role is below what
//     routeRoles (roles.go) gives the route. Handlers there get PrincipalOf(r) and UserID(r);
//     the request logger (zerolog.Ctx) already carries user_id. auditPrincipal,
//     right after requireSession, hands the principal to the audit log.
//
// A new resource is a file with `func (s *Server) fooRoutes(r chi.Router)`, one line in
// sessionRoutes and a line per route in routeRoles (TestRouteRolesComplete fails until then).
// Its services come in through Config fields. /agent/* routes authenticate agents with their
// bearer key instead and are registered outside /api.
package httpapi

import (
	"context"
	"io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/snapshots"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/audit"
	"github.com/bastion-backup/bastion/httpapi/docsite"
	"github.com/bastion-backup/bastion/httpapi/metrics"
	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/httpapi/webui"
	"github.com/bastion-backup/bastion/storage"
)

// Config is everything the HTTP layer needs from the Hub.
type Config struct {
	Logger         zerolog.Logger
	DB             *storage.DB
	UI             fs.FS // the built web app; nil serves no UI
	Version        string
	BuildTimeUnix  int64 // 0 when unknown
	HubTimezone    string
	InsecureHTTP   bool
	TrustedProxies []netip.Prefix
	DebugErrors    bool
	// PublicBaseURL is the URL users reach the Hub at (--public-base-url), or "". Its host is one
	// of the names the Hub answers to, and its origin may send setup and login and open the
	// run-events WebSocket besides the request's own (Host): the only way to widen that check,
	// since X-Forwarded-Host is not believed for it even from a trusted proxy.
	PublicBaseURL string
	// AllowedHosts are further host names the Hub answers to (--allowed-host, and the name it
	// listens on). localhost and IP address literals are always allowed; see
	// middleware.AllowHosts.
	AllowedHosts []string
	// BodyReadTimeout bounds how long a client may take to send a request body (0:
	// middleware.DefaultBodyReadTimeout); under /agent/ it is
	// middleware.DefaultAgentBodyReadTimeout, or this if longer.
	BodyReadTimeout time.Duration
	// DataDir is the Hub's data directory: no job run on the Hub may store snapshots in it (the
	// Hub empties parts of it at start). Empty skips that check.
	DataDir string
	// Docs is the rendered operator docs served under /docs; nil serves the ones built into the
	// binary (docsite.FS).
	Docs fs.FS

	// Snapshots serves the snapshot, retention and incomplete-cleanup routes; nil leaves them out.
	Snapshots *snapshots.Service
	// Operations serves restores, verifies and snapshot browsing; nil leaves them out.
	Operations *operations.Service

	// Clock is the time source of sessions and login throttling; nil is the wall clock.
	Clock clock.Clock

	// Secrets holds the encrypted credentials behind /api/secrets. Nil leaves those routes
	// answering 503 secrets_unavailable.
	Secrets *secrets.Store
	// OnSecretDeleted, when set, runs after a secret of any kind was deleted through the API (the
	// delete is committed): notifications cancel what they queued for that destination. An error
	// is logged; the delete stands.
	OnSecretDeleted func(ctx context.Context, kind, name string) error
	// Agents serves /agent/* (enrollment, the agent socket); nil serves none.
	Agents *agentsock.Hub
	// Notifications serves /api/notifications; nil serves none.
	Notifications *notify.Service
	// Bulk runs bulk operations (engine/bulk.Loop): the API registers each kind's work with it
	// and serves /api/bulk-operations; nil serves none.
	Bulk BulkQueue

	// Runs is the run queue behind the jobs and runs routes (run now, cancel, event stream); nil
	// leaves those routes out.
	Runs *runs.Service
	// RunEventsGrace is how long the run-events WebSocket stays open after its run ended and
	// every event was sent, timed with Clock: 0 is DefaultRunEventsGrace, negative closes at once.
	RunEventsGrace time.Duration
	// Scheduler is woken when a job changes and says when a job fires next; nil gives
	// next_run_at null.
	Scheduler JobScheduler
	// Drills runs scheduled verification: woken on job changes, and "verify now"; nil leaves
	// POST /api/jobs/{id}/verify out (the drill fields of jobs are served either way).
	Drills JobDrills
	// DrillErrors are the drill service's refusals, for their HTTP answers.
	DrillErrors DrillErrors
	// JobSecrets checks that a job's WebDAV secret exists; nil looks in the database.
	JobSecrets SecretLookup
	// OnJobChanged, when set, runs after a job was created, changed, archived, unarchived or
	// deleted (committed), with the agents whose configuration that touches (push config).
	OnJobChanged func(ctx context.Context, jobID string, agentIDs []string)

	// Metrics is the registry behind GET /metrics, with the observers the run queue and the
	// scheduler feed (metrics.New); nil builds one here from DB, whose live histograms (run
	// duration, scheduler lateness) then stay empty.
	Metrics *metrics.Metrics
	// MetricsPublic serves GET /metrics to anyone who can reach it, without credentials
	// (--metrics-public): for a scraper on the same machine or behind the reverse proxy.
	MetricsPublic bool
	// Audit writes the audit log (auditTrail); nil makes one. The Hub passes its own to flush it
	// at shutdown.
	Audit *audit.Recorder
	// Runtime is the configuration resolved at start, shown and saved by
	// /api/settings/hub-runtime-config; nil shows no effective values.
	Runtime *RuntimeConfig

	// testSessionRoutes lets this package's tests mount probe handlers behind requireSession
	// (export_test.go).
	testSessionRoutes func(chi.Router)
}

// openPaths are served over plain HTTP from anywhere: health checks, version, and whether setup
// is needed. None of them takes or returns a secret.
var openPaths = []string{"/api/health", "/api/ready", "/api/system", "/api/setup/status", "/api/control-plane/public-metadata"}

// Server holds the handlers' dependencies.
type Server struct {
	cfg      Config
	metrics  *metrics.Metrics
	log      zerolog.Logger
	db       *storage.DB
	clock    clock.Clock
	throttle throttle
	hashSem  chan struct{} // bounds concurrent Argon2 computations
	audit    *audit.Recorder
	mux      *chi.Mux // the root router: requiredRole finds a request's route in it, and the audit log names routes refused before routing
	signOuts *signOuts
}

// New builds the Hub's HTTP handler.
func New(cfg Config) http.Handler { return newServer(cfg).mux }

func newServer(cfg Config) *Server {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger.With().Str("component", "http").Logger(), db: cfg.DB, clock: cfg.Clock,
		throttle: throttle{db: cfg.DB, clock: cfg.Clock},
		hashSem:  make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		audit:    cfg.Audit,
		signOuts: newSignOuts(),
	}
	if s.audit == nil {
		s.audit = audit.NewRecorder(cfg.DB, cfg.Logger)
	}
	s.metrics = cfg.Metrics
	if s.metrics == nil {
		s.metrics = metrics.New(metrics.Options{DB: cfg.DB, Clock: cfg.Clock, Logger: cfg.Logger,
			OnlineWindow: agentsock.OnlineWindow, Version: cfg.Version})
	}
	if cfg.Bulk != nil {
		s.registerBulkKinds(cfg.Bulk)
	}
	r := chi.NewRouter()
	s.mux = r
	hosts := cfg.AllowedHosts
	if cfg.PublicBaseURL != "" {
		if u, err := url.Parse(cfg.PublicBaseURL); err == nil && u.Host != "" {
			hosts = append(hosts[:len(hosts):len(hosts)], u.Host)
		}
	}
	r.Use(
		middleware.SecurityHeaders,
		middleware.RequestID(s.log),
		middleware.ClientIP(cfg.TrustedProxies, cfg.InsecureHTTP),
		middleware.BodyDeadline(cfg.BodyReadTimeout, 0),
		middleware.AccessLog,
		s.metrics.Middleware,
		s.auditTrail,
		middleware.Recover,
		middleware.BodyLimit,
		middleware.RequireHTTPS(cfg.InsecureHTTP, openPaths...),
		middleware.AllowHosts(middleware.NewHostAllowlist(hosts...), openPaths...),
		middleware.RequireJSONBody,
	)
	if cfg.DebugErrors {
		r.Use(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next.ServeHTTP(w, r.WithContext(respond.WithDebugErrors(r.Context())))
			})
		})
	}

	r.Route("/api", func(r chi.Router) {
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			respond.Error(w, r, respond.NotFound("not_found", "no such API endpoint"))
		})
		r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
			respond.Error(w, r, respond.New(http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this endpoint"))
		})
		s.systemRoutes(r)
		s.authRoutes(r)
		r.Group(func(r chi.Router) {
			r.Use(s.requireSession, s.auditPrincipal)
			s.sessionRoutes(r)
		})
	})

	r.Get("/metrics", s.serveMetrics(s.metrics.Handler()))

	docs := cfg.Docs
	if docs == nil {
		docs = docsite.FS()
	}
	s.docsRoutes(r, docs)

	if cfg.Agents != nil {
		cfg.Agents.Routes(r)
	}

	if cfg.UI != nil {
		ui := webui.New(cfg.UI, s.log)
		r.NotFound(func(w http.ResponseWriter, req *http.Request) {
			if strings.HasPrefix(req.URL.Path, "/agent/") {
				respond.Error(w, req, respond.NotFound("not_found", "no such agent endpoint"))
				return
			}
			ui.ServeHTTP(w, req)
		})
	}
	return s
}

// serveMetrics guards GET /metrics: public with MetricsPublic, else an API token of any role,
// else 401. A browser session is not enough: a scraper has none, and a cookie-authenticated GET
// is what a cross-site page could make a browser send.
func (s *Server) serveMetrics(h http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.MetricsPublic {
			var err error = respond.Unauthorized("unauthorized",
				"an API token is required to read metrics (Authorization: Bearer …), or start the Hub with --metrics-public")
			if tok, ok := bearerToken(r); ok {
				_, err = s.tokenPrincipal(r, tok)
			}
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="bastion"`)
				respond.Error(w, r, err)
				return
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	}
}

// sessionRoutes registers every resource that needs a logged-in user or an API token (and CSRF
// on a session's mutations): add one line per resource, and its routes to routeRoles.
func (s *Server) sessionRoutes(r chi.Router) {
	s.jobRoutes(r)
	s.runRoutes(r)
	s.snapshotRoutes(r)
	s.maintenanceRoutes(r)
	s.operationRoutes(r)
	s.secretRoutes(r)
	s.agentRoutes(r)
	s.bulkRoutes(r)
	s.fleetRoutes(r)
	s.nodeRoutes(r)
	s.notificationRoutes(r)
	s.dashboardRoutes(r)
	s.overviewRoutes(r)
	s.sessionListRoutes(r)
	s.verificationRoutes(r)
	s.runtimeConfigRoutes(r)
	s.auditRoutes(r)
	s.userRoutes(r)
	s.tokenRoutes(r)
	if s.cfg.testSessionRoutes != nil {
		s.cfg.testSessionRoutes(r)
	}
}

func (s *Server) now() time.Time { return s.clock.Now() }
