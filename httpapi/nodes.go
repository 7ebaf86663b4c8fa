package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/fsrpc"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/fslist"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// nodeRoutes browses a node's file system (the Hub's own disk, or an agent's over its socket) and
// WebDAV shares with the node's own credentials.
func (s *Server) nodeRoutes(r chi.Router) {
	r.Get("/nodes/{node_id}/fs/list", s.fsList)
	r.Get("/nodes/{node_id}/webdav/list", s.webdavList)
	r.Post("/nodes/{node_id}/webdav/list", s.webdavList)
	s.nodeSecretRoutes(r)
}

type fsListResponse struct {
	Path       string             `json:"path"`
	Entries    []protocol.FsEntry `json:"entries"`
	NextCursor *string            `json:"next_cursor"`
	Total      *int64             `json:"total"`
}

func (s *Server) fsList(w http.ResponseWriter, r *http.Request) {
	node := chi.URLParam(r, "node_id")
	q := r.URL.Query()
	req := protocol.FsList{Path: q.Get("path")}
	opts, err := listOptionsFromQuery(q)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	req.ListOptions = opts

	var res *protocol.FsListResult
	if node == "hub" {
		res = fsrpc.Answer(&req) // the Hub's own disk, with the rules agents apply
	} else {
		if err := s.onlineAgent(r, node); err != nil {
			respond.Error(w, r, err)
			return
		}
		res, err = s.cfg.Agents.FsList(r.Context(), node, req)
		if err != nil {
			respond.Error(w, r, agentCallError(err))
			return
		}
	}
	if res.ErrorCode != nil || res.Error != nil {
		respond.Error(w, r, listError(res))
		return
	}
	if res.Entries == nil {
		res.Entries = []protocol.FsEntry{}
	}
	respond.JSON(w, http.StatusOK, fsListResponse{Path: req.Path, Entries: res.Entries, NextCursor: res.NextCursor, Total: res.Total})
}

// listOptionsFromQuery reads the paging, filter and sort parameters shared by fs_list and
// webdav_list; an absent parameter stays nil (no parameter at all is the legacy unpaged listing).
func listOptionsFromQuery(q url.Values) (protocol.ListOptions, error) {
	var o protocol.ListOptions
	opt := func(name string) *string {
		if !q.Has(name) {
			return nil
		}
		v := q.Get(name)
		return &v
	}
	o.Cursor, o.Q, o.Kind = opt("cursor"), opt("q"), opt("kind")
	o.TypeSort, o.SortBy, o.SortDir = opt("type_sort"), opt("sort_by"), opt("sort_dir")
	for name, dst := range map[string]**int64{"size_min_bytes": &o.SizeMinBytes, "size_max_bytes": &o.SizeMaxBytes} {
		if v := opt(name); v != nil {
			n, err := strconv.ParseInt(*v, 10, 64)
			if err != nil {
				return o, respond.BadRequest("invalid_option", name+" must be a whole number of bytes").Field(name)
			}
			*dst = &n
		}
	}
	if v := opt("limit"); v != nil {
		n, err := strconv.Atoi(*v)
		if err != nil {
			return o, respond.BadRequest("invalid_option", "limit must be a whole number ≥ 1").Field("limit")
		}
		o.Limit = &n
	}
	if v := opt("hide_dotfiles"); v != nil {
		b, err := strconv.ParseBool(*v)
		if err != nil {
			return o, respond.BadRequest("invalid_option", "hide_dotfiles must be true or false").Field("hide_dotfiles")
		}
		o.HideDotfiles = &b
	}
	return o, checkListOptions(o)
}

// checkListOptions refuses out-of-range numbers and turns the original's type_sort spellings
// into ours, so that an agent older than those spellings understands them.
func checkListOptions(o protocol.ListOptions) error {
	if o.TypeSort != nil {
		*o.TypeSort = fslist.NormalizeTypeSort(*o.TypeSort)
	}
	if o.Limit != nil && *o.Limit < 1 {
		return respond.BadRequest("invalid_option", "limit must be a whole number ≥ 1").Field("limit")
	}
	if o.SizeMinBytes != nil && *o.SizeMinBytes < 0 {
		return respond.BadRequest("invalid_option", "size_min_bytes must be a whole number of bytes").Field("size_min_bytes")
	}
	if o.SizeMaxBytes != nil && *o.SizeMaxBytes < 0 {
		return respond.BadRequest("invalid_option", "size_max_bytes must be a whole number of bytes").Field("size_max_bytes")
	}
	return nil
}

// onlineAgent checks that node is an agent with a live connection: 404 node_not_found, 409
// agent_offline.
func (s *Server) onlineAgent(r *http.Request, node string) error {
	a, err := s.db.Reader().GetAgent(r.Context(), node)
	if errors.Is(err, storage.ErrNotFound) {
		return respond.NotFound("node_not_found", "no such node")
	}
	if err != nil {
		return err
	}
	if a.RevokedAt != nil || s.cfg.Agents == nil || !s.cfg.Agents.Connected(node) {
		return respond.Conflict("agent_offline", "the agent is not connected")
	}
	return nil
}

func agentCallError(err error) error {
	if errors.Is(err, agentsock.ErrAgentOffline) {
		return respond.Conflict("agent_offline", "the agent is not connected").Cause(err)
	}
	return respond.New(http.StatusGatewayTimeout, "agent_timeout", "the agent did not answer in time").Cause(err)
}

// webdavListBody is POST /api/nodes/{node_id}/webdav/list. GET takes base_url, secret_name, path
// and the list options as parameters, and only a stored credential: a typed password never goes
// in a URL, and a GET carries no CSRF token, so it must not make the Hub send anything it was not
// told to by an admin before.
type webdavListBody struct {
	BaseURL    string `json:"base_url"`
	SecretName string `json:"secret_name"`
	// Username and Password browse a server before its credential is saved (POST only, Hub
	// only): no stored secret is involved, so no origin binding applies.
	Username string `json:"username"`
	Password string `json:"password"`
	Path     string `json:"path"`
	protocol.ListOptions
}

// webdavList lists a WebDAV collection with the node's stored credential secret_name (the Hub's
// own for node hub, the agent's over its socket), or, in a POST to node hub, with a typed
// username and password. A stored credential goes only to the origins it is bound to: any other
// base_url is refused with 400 before anything is sent (security issue 11).
func (s *Server) webdavList(w http.ResponseWriter, r *http.Request) {
	node := chi.URLParam(r, "node_id")
	var body webdavListBody
	if r.Method == http.MethodPost {
		if err := respond.DecodeJSON(r, &body); err != nil {
			respond.Error(w, r, err)
			return
		}
		if err := checkListOptions(body.ListOptions); err != nil {
			respond.Error(w, r, err)
			return
		}
	} else {
		q := r.URL.Query()
		if q.Has("password") || q.Has("username") {
			respond.Error(w, r, respond.BadRequest("typed_credentials_need_post",
				"a typed username and password are accepted only in a POST body (with the CSRF token), never in a URL").Field("password"))
			return
		}
		body.BaseURL, body.SecretName, body.Path = q.Get("base_url"), q.Get("secret_name"), q.Get("path")
		opts, err := listOptionsFromQuery(q)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		body.ListOptions = opts
	}
	typed := body.Username != "" || body.Password != ""
	switch {
	case strings.TrimSpace(body.BaseURL) == "":
		respond.Error(w, r, respond.BadRequest("invalid_base_url", "base_url is required").Field("base_url").Reason("required"))
		return
	case typed && strings.TrimSpace(body.SecretName) != "":
		respond.Error(w, r, respond.BadRequest("invalid_credentials", "give either secret_name or username and password, not both").Field("secret_name"))
		return
	case typed && !hasRole(r, RoleAdmin):
		// A typed credential sends the Hub to any server the caller names: only those who may
		// save credentials (and so point jobs anywhere) may do that, not operators probing the
		// Hub's network.
		respond.Error(w, r, respond.Forbidden("typed_credentials_forbidden",
			"only an administrator can browse a WebDAV server with a typed username and password; use a saved credential"))
		return
	case typed && node != secrets.HubNode:
		respond.Error(w, r, respond.BadRequest("typed_credentials_unsupported",
			"an agent lists WebDAV only with its own stored credentials: save the credential for that agent first").Field("username"))
		return
	case !typed && strings.TrimSpace(body.SecretName) == "":
		respond.Error(w, r, respond.BadRequest(fsrpc.CodeMissingWebDAVSecret, "secret_name is required").Field("secret_name").Reason("required"))
		return
	}
	if s.cfg.Secrets == nil && !typed {
		respond.Error(w, r, respond.New(http.StatusServiceUnavailable, "secrets_unavailable", "the secrets store is not available"))
		return
	}
	if node != secrets.HubNode {
		if err := s.onlineAgent(r, node); err != nil {
			respond.Error(w, r, err)
			return
		}
	}
	if !typed {
		if err := s.checkCredentialOrigin(r.Context(), node, body.SecretName, body.BaseURL); err != nil {
			respond.Error(w, r, err)
			return
		}
	}
	req := protocol.WebdavList{BaseURL: body.BaseURL, SecretName: body.SecretName, Path: body.Path, ListOptions: body.ListOptions}
	var res *protocol.WebdavListResult
	if node == secrets.HubNode {
		ctx, cancel := context.WithTimeout(r.Context(), fsrpc.WebDAVTimeout)
		defer cancel()
		creds := func(ctx context.Context, name, baseURL string) (secrets.WebDAV, error) {
			return s.cfg.Secrets.WebDAVFor(ctx, secrets.HubNode, name, baseURL)
		}
		if typed {
			typedCred := secrets.WebDAV{Username: body.Username, Password: body.Password}
			if err := typedCred.Validate(); err != nil {
				respond.Error(w, r, validationError(err))
				return
			}
			req.SecretName = "(typed)" // for the target's redacted description only; never looked up
			creds = func(context.Context, string, string) (secrets.WebDAV, error) { return typedCred, nil }
		}
		res = fsrpc.AnswerWebDAV(ctx, &req, creds, *zerolog.Ctx(r.Context()))
	} else {
		var err error
		res, err = s.cfg.Agents.WebdavList(r.Context(), node, req)
		if err != nil {
			respond.Error(w, r, agentCallError(err))
			return
		}
	}
	if res.ErrorCode != nil || res.Error != nil {
		respond.Error(w, r, webdavListError(res))
		return
	}
	if res.Entries == nil {
		res.Entries = []protocol.FsEntry{}
	}
	respond.JSON(w, http.StatusOK, fsListResponse{Path: "/" + strings.Trim(req.Path, "/"), Entries: res.Entries,
		NextCursor: res.NextCursor, Total: res.Total})
}

// checkCredentialOrigin answers whether node's stored WebDAV credential name may be sent to
// baseURL: 400 invalid_base_url, missing_webdav_secret, credential_origin_unbound or
// credential_origin_mismatch otherwise. It reads no payload and sends nothing.
func (s *Server) checkCredentialOrigin(ctx context.Context, node, name, baseURL string) error {
	if _, err := secrets.NormalizeOrigin(baseURL); err != nil {
		return respond.BadRequest("invalid_base_url", "base_url must be an absolute http or https URL").Field("base_url")
	}
	if _, err := s.db.Reader().GetSecret(ctx, node, secrets.KindWebDAV, name); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return respond.BadRequest(fsrpc.CodeMissingWebDAVSecret, "node "+node+" has no WebDAV credential named "+name).
				Field("secret_name").Reason("not_found")
		}
		return err
	}
	allowed, err := s.cfg.Secrets.AllowedOrigins(ctx, node, secrets.KindWebDAV, name)
	if err != nil {
		return err
	}
	return originError(secrets.CheckOrigin(secrets.KindWebDAV, name, baseURL, allowed), "base_url")
}

// originError turns a *secrets.OriginError into the API's 400 on field; other errors pass.
func originError(err error, field string) error {
	var oe *secrets.OriginError
	if !errors.As(err, &oe) {
		return err
	}
	allowed := oe.Allowed
	if allowed == nil {
		allowed = []string{}
	}
	return respond.BadRequest(oe.Code, oe.Error()).Field(field).Reason("origin_not_allowed").
		Param("secret_name", oe.Name).Param("origin", oe.Origin).Param("allowed_origins", allowed)
}

func webdavListError(res *protocol.WebdavListResult) error {
	code, msg := "list_failed", "the WebDAV collection could not be listed"
	if res.ErrorCode != nil {
		code = *res.ErrorCode
	}
	if res.Error != nil {
		msg = *res.Error
	}
	switch code {
	case fsrpc.CodeMissingWebDAVSecret:
		return respond.BadRequest(code, msg).Field("secret_name")
	case "invalid_base_url", secrets.CodeOriginMismatch, secrets.CodeOriginUnbound:
		return respond.BadRequest(code, msg).Field("base_url")
	}
	return listError(&protocol.FsListResult{ErrorCode: &code, Error: &msg})
}

func listError(res *protocol.FsListResult) error {
	code, msg := "list_failed", "the directory could not be listed"
	if res.ErrorCode != nil {
		code = *res.ErrorCode
	}
	if res.Error != nil {
		msg = *res.Error
	}
	switch code {
	case fslist.CodePathNotFound:
		return respond.NotFound(code, msg)
	case fslist.CodePermission:
		return respond.Forbidden(code, msg)
	case fslist.CodeInvalidPath, fslist.CodeNotDirectory, fslist.CodeInvalidCursor, fslist.CodeInvalidOption:
		return respond.BadRequest(code, msg)
	}
	return respond.New(http.StatusBadGateway, code, msg)
}
