// Package fsrpc answers listing requests: fs_list from the local disk and webdav_list from a WebDAV
// server with the node's own credential. Agents answer the Hub's, and the
// Hub answers its own node ("hub") the same way.
package fsrpc

import (
	"errors"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/fslist"
)

// Answer lists m.Path with m's options. Failures are reported in the result (error_code, error),
// as the protocol carries them.
func Answer(m *protocol.FsList) *protocol.FsListResult {
	opts := options(m.ListOptions)
	res := &protocol.FsListResult{RequestID: m.RequestID, Entries: []protocol.FsEntry{}}
	page, err := fslist.List(m.Path, opts)
	if err != nil {
		var fe *fslist.Error
		code, msg := "io_error", "could not list the directory"
		if errors.As(err, &fe) {
			code, msg = fe.Code, fe.Message
		}
		res.ErrorCode, res.Error = &code, &msg
		return res
	}
	res.Entries, res.NextCursor, res.Total = wirePage(page)
	return res
}

// wirePage is a listing page as fs_list_result and webdav_list_result carry it.
func wirePage(page fslist.Page) (entries []protocol.FsEntry, next *string, total *int64) {
	entries = make([]protocol.FsEntry, 0, len(page.Entries))
	for _, e := range page.Entries {
		entries = append(entries, protocol.FsEntry{Name: e.Name, Path: e.Path, Kind: e.Kind, Size: e.Size, Mtime: e.Mtime})
	}
	if page.NextCursor != "" {
		next = &page.NextCursor
	}
	return entries, next, &page.Total
}

// options turns the wire's paging fields into fslist options; a request without any is the
// legacy unpaged listing.
func options(o protocol.ListOptions) fslist.Options {
	opts := fslist.Options{SizeMin: o.SizeMinBytes, SizeMax: o.SizeMaxBytes}
	opts.Paged = o.Cursor != nil || o.Limit != nil || o.Q != nil || o.Kind != nil || o.HideDotfiles != nil ||
		o.TypeSort != nil || o.SortBy != nil || o.SortDir != nil || o.SizeMinBytes != nil || o.SizeMaxBytes != nil
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	opts.Cursor, opts.Q, opts.Kind = str(o.Cursor), str(o.Q), str(o.Kind)
	opts.TypeSort, opts.SortBy, opts.SortDir = str(o.TypeSort), str(o.SortBy), str(o.SortDir)
	if o.Limit != nil {
		opts.Limit = *o.Limit
	}
	if o.HideDotfiles != nil {
		opts.HideDotfiles = *o.HideDotfiles
	}
	return opts
}
