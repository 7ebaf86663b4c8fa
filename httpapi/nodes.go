package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/agent/fsrpc"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/fslist"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// nodeRoutes browses a node's file system: the Hub's own disk, or an agent's over its socket.
func (s *Server) nodeRoutes(r chi.Router) {
	r.Get("/nodes/{node_id}/fs/list", s.fsList)
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
	opt := func(name string) *string {
		if !q.Has(name) {
			return nil
		}
		v := q.Get(name)
		return &v
	}
	req.Cursor, req.Q, req.Kind = opt("cursor"), opt("q"), opt("kind")
	req.TypeSort, req.SortBy, req.SortDir = opt("type_sort"), opt("sort_by"), opt("sort_dir")
	for name, dst := range map[string]**int64{"size_min_bytes": &req.SizeMinBytes, "size_max_bytes": &req.SizeMaxBytes} {
		if v := opt(name); v != nil {
			n, err := strconv.ParseInt(*v, 10, 64)
			if err != nil || n < 0 {
				respond.Error(w, r, respond.BadRequest("invalid_option", name+" must be a whole number of bytes").Field(name))
				return
			}
			*dst = &n
		}
	}
	if v := opt("limit"); v != nil {
		n, err := strconv.Atoi(*v)
		if err != nil || n < 1 {
			respond.Error(w, r, respond.BadRequest("invalid_option", "limit must be a whole number ≥ 1").Field("limit"))
			return
		}
		req.Limit = &n
	}
	if v := opt("hide_dotfiles"); v != nil {
		b, err := strconv.ParseBool(*v)
		if err != nil {
			respond.Error(w, r, respond.BadRequest("invalid_option", "hide_dotfiles must be true or false").Field("hide_dotfiles"))
			return
		}
		req.HideDotfiles = &b
	}

	var res *protocol.FsListResult
	if node == "hub" {
		res = fsrpc.Answer(&req) // the Hub's own disk, with the rules agents apply
	} else {
		a, err := s.db.Reader().GetAgent(r.Context(), node)
		if errors.Is(err, storage.ErrNotFound) {
			respond.Error(w, r, respond.NotFound("node_not_found", "no such node"))
			return
		}
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		if a.RevokedAt != nil || s.cfg.Agents == nil || !s.cfg.Agents.Connected(node) {
			respond.Error(w, r, respond.Conflict("agent_offline", "the agent is not connected"))
			return
		}
		res, err = s.cfg.Agents.FsList(r.Context(), node, req)
		if errors.Is(err, agentsock.ErrAgentOffline) {
			respond.Error(w, r, respond.Conflict("agent_offline", "the agent is not connected").Cause(err))
			return
		}
		if err != nil {
			respond.Error(w, r, respond.New(http.StatusGatewayTimeout, "agent_timeout", "the agent did not answer in time").Cause(err))
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
