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

// webdavListBody is POST /api/nodes/{node_id}/webdav/list (GET takes the same as parameters).
type webdavListBody struct {
	BaseURL    string `json:"base_url"`
	SecretName string `json:"secret_name"`
	Path       string `json:"path"`
	protocol.ListOptions
}

// webdavList lists a WebDAV collection with the node's credential: the Hub's own "webdav" secret
// for node hub, or the agent's (from its secrets snapshot) over its socket.
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
		body.BaseURL, body.SecretName, body.Path = q.Get("base_url"), q.Get("secret_name"), q.Get("path")
		opts, err := listOptionsFromQuery(q)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		body.ListOptions = opts
	}
	switch {
	case strings.TrimSpace(body.BaseURL) == "":
		respond.Error(w, r, respond.BadRequest("invalid_base_url", "base_url is required").Field("base_url").Reason("required"))
		return
	case strings.TrimSpace(body.SecretName) == "":
		respond.Error(w, r, respond.BadRequest(fsrpc.CodeMissingWebDAVSecret, "secret_name is required").Field("secret_name").Reason("required"))
		return
	}
	req := protocol.WebdavList{BaseURL: body.BaseURL, SecretName: body.SecretName, Path: body.Path, ListOptions: body.ListOptions}
	var res *protocol.WebdavListResult
	if node == "hub" {
		if s.cfg.Secrets == nil {
			respond.Error(w, r, respond.New(http.StatusServiceUnavailable, "secrets_unavailable", "the secrets store is not available"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), fsrpc.WebDAVTimeout)
		defer cancel()
		res = fsrpc.AnswerWebDAV(ctx, &req, func(ctx context.Context, name string) (secrets.WebDAV, error) {
			return s.cfg.Secrets.WebDAV(ctx, secrets.HubNode, name)
		}, *zerolog.Ctx(r.Context()))
	} else {
		if err := s.onlineAgent(r, node); err != nil {
			respond.Error(w, r, err)
			return
		}
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
	case "invalid_base_url":
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
