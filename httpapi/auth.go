package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/names"
	"github.com/bastion-backup/bastion/httpapi/audit"
	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/password"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Session and CSRF wire names.
const (
	SessionCookie = "bastion_session"
	CSRFHeader    = "X-CSRF-Token"
)

const (
	// SessionTTL is how long a login lasts: absolute, counted from the login, never extended.
	SessionTTL = 7 * 24 * time.Hour
	// MinPasswordLen is the shortest password setup accepts, in bytes.
	MinPasswordLen = 12
	// maxUsernameLen bounds usernames set at setup.
	maxUsernameLen = 128
	tokenBytes     = 32
	// MaxSessionsPerUser bounds the live sessions of one user: a login beyond it ends the oldest
	// (in the login's own transaction), so stolen or forgotten logins do not pile up.
	MaxSessionsPerUser = 10
	// sessionTouchInterval is how often a session's last_seen_at is written: at most one write
	// a minute per session, not one per request.
	sessionTouchInterval = time.Minute
	// maxUserAgentLen bounds the User-Agent stored with a session, in characters.
	maxUserAgentLen = 200
)

var tokenEncoding = base64.RawURLEncoding

// authRoutes are reachable without a session. Logout checks its session itself: without one it
// has nothing to protect and still answers 204.
func (s *Server) authRoutes(r chi.Router) {
	r.Post("/setup/initialize", s.setupInitialize)
	r.Post("/auth/login", s.login)
	r.Post("/auth/logout", s.logout)
	r.Get("/session", s.session)
}

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Server) setupInitialize(w http.ResponseWriter, r *http.Request) {
	if err := s.refuseCrossSite(r); err != nil {
		respond.Error(w, r, err)
		return
	}
	var req credentials
	if err := respond.DecodeJSON(r, &req); err != nil {
		respond.Error(w, r, err)
		return
	}
	username := strings.TrimSpace(req.Username)
	// No attempted name is recorded: it may be a password typed in the wrong field. A setup that
	// succeeds records the administrator it created.
	if err := validateUsername(username); err != nil {
		respond.Error(w, r, err)
		return
	}
	if len(req.Password) < MinPasswordLen {
		respond.Error(w, r, respond.BadRequest("invalid_password",
			fmt.Sprintf("password must be at least %d bytes long", MinPasswordLen)).
			Reason("min_length").Field("password").Param("min_length", MinPasswordLen))
		return
	}
	ctx := r.Context()
	// A quick answer for the common case; the conditional insert below is what decides a race.
	if n, err := s.db.Reader().CountUsers(ctx); err != nil {
		respond.Error(w, r, err)
		return
	} else if n > 0 {
		respond.Error(w, r, errAlreadyInitialized())
		return
	}
	hash, err := s.hashPassword(ctx, req.Password)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	created, err := s.db.Writer().CreateFirstUser(ctx, username, hash, s.now().Unix())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if !created {
		respond.Error(w, r, errAlreadyInitialized())
		return
	}
	audit.From(r).User(0, username)
	zerolog.Ctx(ctx).Info().Msg("setup complete: administrator created")
	respond.NoContent(w)
}

func errAlreadyInitialized() error {
	return respond.Conflict("already_initialized", "setup is already complete")
}

func validateUsername(u string) error { return validateName("username", u, maxUsernameLen) }

// validateName checks a free-text name a person chose (a username, a token's name): present,
// bounded, valid UTF-8 and free of control and bidirectional formatting characters, which would
// forge lines in logs and the audit view or disguise the name. The error's code is invalid_<field>.
func validateName(field, v string, maxLen int) error {
	bad := func(reason, msg string) *respond.APIError {
		return respond.BadRequest("invalid_"+field, msg).Reason(reason).Field(field)
	}
	switch {
	case v == "":
		return bad("required", field+" is required")
	case len(v) > maxLen:
		return bad("too_long", fmt.Sprintf("%s is longer than %d bytes", field, maxLen)).Param("max_length", maxLen)
	case !utf8.ValidString(v):
		return bad("invalid_format", field+" is not valid UTF-8")
	}
	for _, c := range v {
		if names.Forbidden(c) {
			return bad("invalid_format", field+" must not contain control or bidirectional formatting characters")
		}
	}
	return nil
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	log := zerolog.Ctx(ctx)
	if err := s.refuseCrossSite(r); err != nil {
		respond.Error(w, r, err)
		return
	}
	var req credentials
	if err := respond.DecodeJSON(r, &req); err != nil {
		respond.Error(w, r, err)
		return
	}
	username := strings.TrimSpace(req.Username)
	// The name tried is recorded even when the login fails, but only when it names a user: a
	// name that matches no one is often a password typed in the wrong field. The password never is.
	if err := s.noteAttempt(ctx, r, username); err != nil {
		respond.Error(w, r, err)
		return
	}
	if username == "" {
		respond.Error(w, r, respond.BadRequest("invalid_username", "username is required").Reason("required").Field("username"))
		return
	}
	if req.Password == "" {
		respond.Error(w, r, respond.BadRequest("invalid_password", "password is required").Reason("required").Field("password"))
		return
	}

	// The attempt is counted before the password is hashed, atomically, so that a burst of
	// parallel guesses gets no more checks than sequential ones would. A locked-out client
	// learns nothing about its guess, and costs no hashing.
	ip := middleware.GetClient(r).IP
	res, wait, err := s.throttle.reserve(ctx, loginKeys(ip, username))
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if wait > 0 {
		secs := refuseThrottled(w, r, wait, "logins")
		log.Warn().Str("client_ip", clientKey(r)).Int64("retry_after_seconds", secs).Msg("login refused: client or username is locked out")
		return
	}

	user, ok, err := s.checkCredentials(ctx, username, req.Password)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if !ok {
		log.Info().Str("client_ip", clientKey(r)).Msg("login failed: invalid credentials")
		respond.Error(w, r, respond.Unauthorized("invalid_credentials", "invalid username or password"))
		return
	}

	token, sess, err := newSession(user.ID, s.now())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	sess.ClientIP, sess.UserAgent = clientKey(r), cleanUserAgent(r.UserAgent())
	var evicted int64
	err = s.db.Write(ctx, func(q storage.Q) error {
		if err := refund(ctx, q, res); err != nil {
			return err
		}
		if err := q.InsertSession(ctx, sess); err != nil {
			return err
		}
		evicted, err = q.TrimSessions(ctx, user.ID, MaxSessionsPerUser, sess.CreatedAt)
		return err
	})
	if err != nil {
		respond.Error(w, r, fmt.Errorf("log in: %w", err))
		return
	}
	audit.From(r).User(user.ID, user.Username)
	setSessionCookie(w, r, token)
	ev := log.Info().Int64("user_id", user.ID).Str("client_ip", sess.ClientIP)
	if evicted > 0 {
		s.signOuts.happened() // the oldest sessions made room for this one
		ev = ev.Int64("sessions_evicted", evicted)
	}
	ev.Msg("login succeeded")
	w.Header().Set("Cache-Control", "no-store")
	respond.JSON(w, http.StatusOK, map[string]any{
		"csrf_token": sess.CSRFToken, "user_id": user.ID, "username": user.Username, "role": user.Role,
	})
}

// noteAttempt records the username a login tried in its audit row when it is a valid name that
// belongs to a user, and nothing otherwise.
func (s *Server) noteAttempt(ctx context.Context, r *http.Request, username string) error {
	if validateUsername(username) != nil {
		return nil
	}
	if _, err := s.db.Reader().GetUserByUsername(ctx, username); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("look up the user of a login: %w", err)
	}
	audit.From(r).Attempt(username)
	return nil
}

// checkCredentials hashes the password whether or not the user exists, so that an unknown user
// and a wrong password take the same time and give the same answer.
func (s *Server) checkCredentials(ctx context.Context, username, pw string) (storage.User, bool, error) {
	user, err := s.db.Reader().GetUserByUsername(ctx, username)
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, false, err
	}
	if err := s.acquireHasher(ctx); err != nil {
		return storage.User{}, false, err
	}
	defer s.releaseHasher()
	if !found {
		password.VerifyDummy(pw)
		return storage.User{}, false, nil
	}
	ok, err := password.Verify(user.PasswordHash, pw)
	if err != nil {
		// A stored hash we cannot read is the operator's problem, not the client's: log it (the
		// error never includes the hash) and answer like a wrong password.
		zerolog.Ctx(ctx).Error().Err(err).Int64("user_id", user.ID).Msg("stored password hash is unusable")
		return storage.User{}, false, nil
	}
	return user, ok, nil
}

func (s *Server) hashPassword(ctx context.Context, pw string) (string, error) {
	if err := s.acquireHasher(ctx); err != nil {
		return "", err
	}
	defer s.releaseHasher()
	return password.Hash(pw)
}

// acquireHasher bounds concurrent Argon2 computations: each takes 19 MiB and a core for tens of
// milliseconds, and a burst of logins must not exhaust the host's memory.
func (s *Server) acquireHasher(ctx context.Context) error {
	select {
	case s.hashSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for a password hashing slot: %w", ctx.Err())
	}
}

func (s *Server) releaseHasher() { <-s.hashSem }

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok, err := s.lookupSession(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if ok {
		audit.From(r).User(sess.UserID, "")
		if !csrfMatches(r, sess) {
			respond.Error(w, r, errInvalidCSRF())
			return
		}
		if err := s.db.Writer().DeleteSession(ctx, sess.ID); err != nil {
			respond.Error(w, r, err)
			return
		}
		s.signOuts.happened()
		zerolog.Ctx(ctx).Info().Int64("user_id", sess.UserID).Msg("logged out")
	}
	clearSessionCookie(w, r)
	respond.NoContent(w)
}

type sessionInfo struct {
	Authenticated bool   `json:"authenticated"`
	CSRFToken     string `json:"csrf_token,omitempty"`
	UserID        int64  `json:"user_id,omitempty"`
	Username      string `json:"username,omitempty"`
	// Role lets the UI hide what the user may not do; the server checks every request anyway.
	Role string `json:"role,omitempty"`
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	sess, ok, err := s.lookupSession(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		respond.JSON(w, http.StatusOK, sessionInfo{})
		return
	}
	respond.JSON(w, http.StatusOK, sessionInfo{Authenticated: true, CSRFToken: sess.CSRFToken,
		UserID: sess.UserID, Username: sess.Username, Role: sess.Role})
}

// requireSession lets a request through only with a live session or a valid API token
// (Authorization: Bearer), and only if the principal's role is at least what routeRoles asks of
// the route. A session request whose method is not safe (GET, HEAD, OPTIONS) must also carry the
// session's CSRF token in X-CSRF-Token; a bearer token needs none, since no browser sends it by
// itself. It puts the Principal and the user id in the context (PrincipalOf, UserID) and the user
// id in the request logger.
func (s *Server) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, sess, err := s.authenticate(r)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		// The request logger is per request; updating it in place makes the access log line carry
		// the user id too.
		zerolog.Ctx(r.Context()).UpdateContext(func(c zerolog.Context) zerolog.Context {
			c = c.Int64("user_id", p.UserID)
			if p.TokenID != 0 {
				c = c.Int64("token_id", p.TokenID)
			}
			return c
		})
		if p.TokenID == 0 && !safeMethod(r.Method) && !readOnlyPost(r) && !csrfMatches(r, sess) {
			respond.Error(w, r, errInvalidCSRF())
			return
		}
		if need := s.requiredRole(r); !RoleAtLeast(p.Role, need) {
			respond.Error(w, r, errRoleForbidden(need))
			return
		}
		ctx := context.WithValue(r.Context(), userIDKey, p.UserID)
		if p.TokenID == 0 {
			ctx = context.WithValue(ctx, sessionPublicIDKey, sess.PublicID)
			ctx = context.WithValue(ctx, sessionIDKey, sess.ID)
		}
		ctx = context.WithValue(ctx, principalKey, p)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// authenticate finds who sent r: the API token of an Authorization: Bearer header when there is
// one (a wrong one is refused, never passed over for the cookie), else the session cookie. The
// role is the users row's as it is now, so a demotion takes effect on the next request. The
// session is zero for a token. A refusal is a 401 APIError.
func (s *Server) authenticate(r *http.Request) (Principal, storage.Session, error) {
	if tok, ok := bearerToken(r); ok {
		p, err := s.tokenPrincipal(r, tok)
		return p, storage.Session{}, err
	}
	sess, ok, err := s.lookupSession(r)
	if err != nil {
		return Principal{}, storage.Session{}, err
	}
	if !ok {
		return Principal{}, storage.Session{}, respond.Unauthorized("unauthorized", "login required")
	}
	if now := s.now().Unix(); now-sess.LastSeenAt >= int64(sessionTouchInterval/time.Second) {
		// Only the sessions list reads it: a failed write must not fail the request.
		if err := s.db.Writer().TouchSession(r.Context(), sess.ID, now); err != nil {
			zerolog.Ctx(r.Context()).Warn().Err(err).Msg("record session last seen")
		}
	}
	return Principal{UserID: sess.UserID, Username: sess.Username, Role: sess.Role, ExpiresAt: sess.ExpiresAt}, sess, nil
}

// readOnlyPOSTs are the POST routes (chi patterns under /api) that change nothing and make the
// Hub contact nothing: a forged request gains the attacker nothing, since the browser keeps the
// answer from another origin. They need the session only, as in the original, whose UI sends no
// token on them. A POST carrying a typed credential the Hub then uses (POST …/webdav/list) is
// not here: it makes the Hub connect somewhere.
var readOnlyPOSTs = map[string]bool{
	"/api/jobs/{id}/retention/preview":      true,
	"/api/notifications/templates/validate": true,
}

// readOnlyPost reports whether r is a POST to one of readOnlyPOSTs. requireSession wraps the
// matched handler of routes registered directly, so their whole pattern is known here; under a
// mounted sub-router (r.Route) it is not yet, so those entries are static paths, matched as such.
func readOnlyPost(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	if readOnlyPOSTs[r.URL.Path] {
		return true
	}
	rc := chi.RouteContext(r.Context())
	return rc != nil && readOnlyPOSTs[rc.RoutePattern()]
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func errInvalidCSRF() error {
	return respond.Unauthorized("invalid_csrf", "missing or invalid CSRF token (X-CSRF-Token)")
}

func csrfMatches(r *http.Request, sess storage.Session) bool {
	got := r.Header.Get(CSRFHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRFToken)) == 1
}

// lookupSession finds the live session named by the request's cookie. A missing, malformed,
// unknown or expired cookie is simply no session.
func (s *Server) lookupSession(r *http.Request) (storage.Session, bool, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return storage.Session{}, false, nil
	}
	id, ok := sessionID(c.Value)
	if !ok {
		return storage.Session{}, false, nil
	}
	sess, err := s.db.Reader().GetSession(r.Context(), id, s.now().Unix())
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Session{}, false, nil
	}
	if err != nil {
		return storage.Session{}, false, err
	}
	return sess, true, nil
}

// sessionID is what the database stores for a cookie value: the SHA-256 of the token, so that a
// copy of the database (a backup, a stolen disk) holds no usable session. It refuses anything
// that is not a token this Hub could have issued, without touching the database.
func sessionID(cookie string) (string, bool) {
	raw, err := tokenEncoding.DecodeString(cookie)
	if err != nil || len(raw) != tokenBytes {
		return "", false
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), true
}

// newSession returns the cookie token and the row to store for a login at now.
func newSession(userID int64, now time.Time) (string, storage.Session, error) {
	token, err := randomToken()
	if err != nil {
		return "", storage.Session{}, err
	}
	csrf, err := randomToken()
	if err != nil {
		return "", storage.Session{}, err
	}
	id, _ := sessionID(token)
	pub := make([]byte, 12)
	if _, err := rand.Read(pub); err != nil {
		return "", storage.Session{}, fmt.Errorf("generate session id: %w", err)
	}
	return token, storage.Session{
		ID: id, PublicID: hex.EncodeToString(pub), UserID: userID, CSRFToken: csrf,
		CreatedAt: now.Unix(), ExpiresAt: now.Add(SessionTTL).Unix(),
	}, nil
}

func randomToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return tokenEncoding.EncodeToString(b), nil
}

// setSessionCookie sets a browser-session cookie (no Max-Age: the server row's expiry is what
// counts). Secure only when the request reached a trusted proxy over HTTPS: a Secure cookie sent
// over plain HTTP (loopback, --insecure-http) would be dropped by the browser.
func setSessionCookie(w http.ResponseWriter, r *http.Request, token string) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: token, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: middleware.GetClient(r).HTTPS,
	})
}

func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: middleware.GetClient(r).HTTPS,
	})
}

// clientKey is the client address of a request through trusted proxies, for logs.
func clientKey(r *http.Request) string {
	ip := middleware.GetClient(r).IP
	if !ip.IsValid() {
		return "unknown"
	}
	return ip.String()
}

// refuseCrossSite refuses (403 cross_site_refused) a setup or login sent by a page of another
// site: Sec-Fetch-Site other than same-origin or none (same-site is refused too — a sibling
// subdomain is not the Hub), or an Origin that is neither the Hub's own origin as the request
// reached it (through trusted proxies, as for the run-events WebSocket) nor the origin of
// --public-base-url. Scripts and curl send neither header and pass. Both routes work without a
// session, so CSRF tokens cannot protect them.
func (s *Server) refuseCrossSite(r *http.Request) error {
	switch site := strings.ToLower(r.Header.Get("Sec-Fetch-Site")); site {
	case "", "same-origin", "none":
	default:
		if site != "cross-site" && site != "same-site" {
			site = "unrecognised" // never echo arbitrary client bytes
		}
		return respond.New(http.StatusForbidden, "cross_site_refused",
			"setup and login are accepted only from the Hub's own pages (Sec-Fetch-Site: "+site+")").Reason("sec_fetch_site")
	}
	origin := r.Header.Get("Origin")
	if origin == "" || checkOrigin(r, middleware.GetClient(r), s.cfg.PublicBaseURL) == nil {
		return nil
	}
	return respond.New(http.StatusForbidden, "cross_site_refused",
		"setup and login are accepted only from the Hub's own origin (the Origin header names another)").Reason("origin")
}
