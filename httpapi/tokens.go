package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

const (
	// APITokenPrefix starts every API token, so that secret scanners and people recognise one.
	APITokenPrefix = "bst_"
	// maxTokenNameLen bounds an API token's name, in bytes.
	maxTokenNameLen = 100
	// tokenTouchInterval is how often a token's last_used_at is written, like a session's.
	tokenTouchInterval = time.Minute
)

// tokenRoutes: API tokens, admin only (routeRoles). A token is shown once, when created.
func (s *Server) tokenRoutes(r chi.Router) {
	r.Get("/tokens", s.listTokens)
	r.Post("/tokens", s.createToken)
	r.Delete("/tokens/{id}", s.deleteToken)
}

// bearerToken returns the credential of an "Authorization: Bearer" header. Other schemes (a
// proxy's Basic credentials) are none of the API's business and count as no token.
func bearerToken(r *http.Request) (string, bool) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if strings.EqualFold(h, "Bearer") {
		return "", true // an empty token is a wrong one, not a missing one
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// apiTokenHash is what the database stores for a token: its SHA-256. A token is 32 random bytes,
// so a plain hash is as good as a slow one, and the lookup by hash needs no constant-time
// compare. It refuses, without touching the database, anything this Hub could not have issued.
func apiTokenHash(tok string) (string, bool) {
	raw, ok := strings.CutPrefix(tok, APITokenPrefix)
	if !ok {
		return "", false
	}
	if b, err := tokenEncoding.DecodeString(raw); err != nil || len(b) != tokenBytes {
		return "", false
	}
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:]), true
}

func newAPIToken() (token, hash string, err error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate api token: %w", err)
	}
	token = APITokenPrefix + tokenEncoding.EncodeToString(b)
	hash, _ = apiTokenHash(token)
	return token, hash, nil
}

// tokenPrincipal finds the live token tok and who it acts as: its creator, with the lower of the
// token's role and the creator's role now.
func (s *Server) tokenPrincipal(r *http.Request, tok string) (Principal, error) {
	invalid := respond.Unauthorized("invalid_token", "invalid, expired or revoked API token")
	hash, ok := apiTokenHash(tok)
	if !ok {
		return Principal{}, invalid
	}
	now := s.now().Unix()
	t, err := s.db.Reader().GetAPITokenByHash(r.Context(), hash, now)
	if errors.Is(err, storage.ErrNotFound) {
		return Principal{}, invalid
	}
	if err != nil {
		return Principal{}, err
	}
	if now-t.LastUsedAt >= int64(tokenTouchInterval/time.Second) {
		// Only the tokens list reads it: a failed write must not fail the request.
		if err := s.db.Writer().TouchAPIToken(r.Context(), t.ID, now); err != nil {
			zerolog.Ctx(r.Context()).Warn().Err(err).Int64("token_id", t.ID).Msg("record api token last use")
		}
	}
	return Principal{
		UserID: t.CreatedBy, Username: t.CreatedByName, Role: lowerRole(t.Role, t.CreatorRole),
		TokenID: t.ID, TokenName: t.Name, ExpiresAt: t.ExpiresAt,
	}, nil
}

type tokenView struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Role        string `json:"role"`
	CreatedAt   int64  `json:"created_at"`
	ExpiresAt   *int64 `json:"expires_at"`
	LastUsedAt  *int64 `json:"last_used_at"`
	CreatedBy   string `json:"created_by"`
	CreatedByID int64  `json:"created_by_id"`
	Expired     bool   `json:"expired"`
}

func nonZero(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	tokens, err := s.db.Reader().ListAPITokens(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	now := s.now().Unix()
	items := make([]tokenView, 0, len(tokens))
	for _, t := range tokens {
		items = append(items, tokenView{
			ID: t.ID, Name: t.Name, Role: t.Role, CreatedAt: t.CreatedAt, ExpiresAt: nonZero(t.ExpiresAt),
			LastUsedAt: nonZero(t.LastUsedAt), CreatedBy: t.CreatedByName, CreatedByID: t.CreatedBy,
			Expired: t.ExpiresAt != 0 && t.ExpiresAt <= now,
		})
	}
	w.Header().Set("Cache-Control", "no-store")
	respond.JSON(w, http.StatusOK, map[string]any{"items": items})
}

type createTokenBody struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	ExpiresAt *int64 `json:"expires_at"` // unix seconds; null or absent: never
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var body createTokenBody
	if err := respond.DecodeJSON(r, &body); err != nil {
		respond.Error(w, r, err)
		return
	}
	name := strings.TrimSpace(body.Name)
	if err := validateTokenName(name); err != nil {
		respond.Error(w, r, err)
		return
	}
	if !ValidRole(body.Role) {
		respond.Error(w, r, errInvalidRole())
		return
	}
	p, _ := PrincipalOf(r)
	if !RoleAtLeast(p.Role, body.Role) {
		respond.Error(w, r, respond.Forbidden("role_too_high", "a token cannot have a role above its creator's").
			Reason("role").Field("role").Param("max_role", p.Role))
		return
	}
	now := s.now()
	var expires int64
	if body.ExpiresAt != nil {
		if *body.ExpiresAt <= now.Unix() {
			respond.Error(w, r, respond.BadRequest("invalid_expires_at", "expires_at must be in the future").
				Reason("in_past").Field("expires_at"))
			return
		}
		expires = *body.ExpiresAt
	}
	token, hash, err := newAPIToken()
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	t := storage.APIToken{Name: name, Hash: hash, Role: body.Role, CreatedBy: p.UserID, CreatedAt: now.Unix(), ExpiresAt: expires}
	id, err := s.db.Writer().InsertAPIToken(r.Context(), t)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Int64("token_id", id).Str("role", t.Role).Msg("api token created")
	w.Header().Set("Cache-Control", "no-store")
	respond.JSON(w, http.StatusCreated, map[string]any{
		"id": id, "token": token, "name": name, "role": t.Role, "created_at": t.CreatedAt, "expires_at": nonZero(expires),
	})
}

func validateTokenName(name string) error { return validateName("name", name, maxTokenNameLen) }

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		respond.Error(w, r, respond.NotFound("token_not_found", "no such API token"))
		return
	}
	if err := s.db.Writer().DeleteAPIToken(r.Context(), id); errors.Is(err, storage.ErrNotFound) {
		respond.Error(w, r, respond.NotFound("token_not_found", "no such API token"))
		return
	} else if err != nil {
		respond.Error(w, r, err)
		return
	}
	s.signOuts.happened()
	zerolog.Ctx(r.Context()).Info().Int64("token_id", id).Msg("api token revoked")
	respond.NoContent(w)
}

func errInvalidRole() error {
	return respond.BadRequest("invalid_role", "role must be admin, operator or viewer").
		Reason("invalid_value").Field("role")
}
