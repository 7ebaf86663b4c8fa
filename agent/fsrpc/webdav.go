package fsrpc

import (
	"context"
	"errors"
	"path"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/fslist"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
)

// CodeMissingWebDAVSecret is the error code of a webdav_list, or of a restore to WebDAV
// (agent/client), naming a credential the node does not have.
const CodeMissingWebDAVSecret = "missing_webdav_secret"

// WebDAVCredentials returns the node's WebDAV credential called name for use with baseURL: an
// error matching secrets.ErrNotFound when there is none, a *secrets.OriginError when it is not
// bound to baseURL's origin.
type WebDAVCredentials func(ctx context.Context, name, baseURL string) (secrets.WebDAV, error)

// AnswerWebDAV lists the collection m.Path (relative to m.BaseURL) with the node's credential
// m.SecretName, filtered, sorted and paged like fs_list. Failures are reported in the result;
// no error message carries the credential.
func AnswerWebDAV(ctx context.Context, m *protocol.WebdavList, creds WebDAVCredentials, log zerolog.Logger) *protocol.WebdavListResult {
	res := &protocol.WebdavListResult{RequestID: m.RequestID, Entries: []protocol.FsEntry{}}
	fail := func(code, msg string) *protocol.WebdavListResult {
		res.ErrorCode, res.Error = &code, &msg
		return res
	}
	if strings.TrimSpace(m.SecretName) == "" {
		return fail(CodeMissingWebDAVSecret, "secret_name is required")
	}
	cred, err := creds(ctx, m.SecretName, m.BaseURL)
	var oe *secrets.OriginError
	if errors.As(err, &oe) {
		return fail(oe.Code, oe.Error()) // nothing was sent
	}
	if errors.Is(err, secrets.ErrNotFound) {
		return fail(CodeMissingWebDAVSecret, "this node has no WebDAV credential named "+m.SecretName)
	}
	if err != nil {
		return fail("webdav_secret_unreadable", "the WebDAV credential "+m.SecretName+" could not be read")
	}
	t, err := webdav.New(m.BaseURL, cred, webdav.Options{SecretName: m.SecretName, Logger: log})
	if err != nil {
		return fail("invalid_base_url", "base_url is not a usable http(s) URL without credentials")
	}
	opts := options(m.ListOptions)
	dir := "/" + strings.Trim(m.Path, "/")
	items, err := t.List(ctx, dir)
	if err != nil {
		var te *targets.Error
		switch {
		case errors.Is(err, targets.ErrNotExist):
			return fail(fslist.CodePathNotFound, "the WebDAV collection "+dir+" does not exist")
		case errors.Is(err, targets.ErrInvalidPath):
			return fail(fslist.CodeInvalidPath, "path segments may not be empty, '.' or '..'")
		case errors.As(err, &te):
			return fail(te.Code, "the WebDAV server could not be listed: "+te.Code)
		case ctx.Err() != nil:
			return fail("webdav_timeout", "the WebDAV server did not answer in time")
		}
		return fail("webdav_unknown", "the WebDAV server could not be listed")
	}
	entries := make([]fslist.Entry, 0, len(items))
	for _, it := range items {
		e := fslist.Entry{Name: it.Name, Path: path.Join(dir, it.Name), Kind: it.Kind, Size: it.Size}
		if !it.MTime.IsZero() {
			mt := it.MTime.Unix()
			e.Mtime = &mt
		}
		entries = append(entries, e)
	}
	page, err := fslist.Paginate(entries, opts)
	if err != nil {
		var fe *fslist.Error
		if errors.As(err, &fe) {
			return fail(fe.Code, fe.Message)
		}
		return fail("list_failed", "the listing could not be paged")
	}
	res.Entries, res.NextCursor, res.Total = wirePage(page)
	return res
}

// WebDAVTimeout bounds one webdav_list on the node that runs it, as the Hub waits at most this
// long for the answer.
const WebDAVTimeout = 5 * time.Second
