package webdav

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/engine/targets"
)

// Entry kinds.
const (
	KindDir  = "dir"
	KindFile = "file"
)

// Entry is one member of a collection as PROPFIND reports it.
type Entry struct {
	Href  string    // the member's URL-decoded path on the server
	Name  string    // last path segment, decoded
	Kind  string    // KindDir or KindFile
	Size  int64     // getcontentlength of files; 0 when the server gave none
	MTime time.Time // getlastmodified; zero when the server gave none
}

// maxPropfindBody bounds how much of a PROPFIND answer is read.
const maxPropfindBody = 64 << 20

const propfindBody = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>`

// List returns the members of the collection at p, a slash-separated path relative to the
// base URL ("" is the base itself), sorted by name. The collection itself is not listed. A
// missing collection is an error matching targets.ErrNotExist.
func (t *Target) List(ctx context.Context, p string) ([]Entry, error) {
	op := "propfind /" + strings.Trim(p, "/")
	segs, err := splitPath(p)
	if err != nil {
		return nil, newErr(targets.KindConfig, op, 0, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	u := t.base
	for i, s := range segs {
		if i > 0 {
			u += "/"
		}
		u += escapeSegment(s)
	}
	entries, err := t.propfind(ctx, op, u)
	if errors.Is(err, targets.ErrNotExist) && !strings.HasSuffix(u, "/") {
		// Some servers only know a collection by its URL with the trailing slash.
		entries, err = t.propfind(ctx, op, u+"/")
	}
	return entries, err
}

func splitPath(p string) ([]string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil, nil
	}
	segs := strings.Split(p, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "\x00\\") {
			return nil, fmt.Errorf("path segment %q is not allowed: %w", s, targets.ErrInvalidPath)
		}
	}
	return segs, nil
}

// propfind lists collection u with Depth: 1.
func (t *Target) propfind(ctx context.Context, op, u string) ([]Entry, error) {
	header := http.Header{"Depth": {"1"}, "Content-Type": {`application/xml; charset="utf-8"`}}
	var entries []Entry
	err := t.once(func() (time.Duration, bool, error) {
		body := []byte(propfindBody)
		x, err := t.send(ctx, op, "PROPFIND", u, newAttemptBody(ctx, bytes.NewReader(body), int64(len(body))), int64(len(body)), header)
		if err != nil {
			return 0, false, err
		}
		switch x.resp.StatusCode {
		case http.StatusMultiStatus, http.StatusOK:
			entries, err = parseMultistatus(io.LimitReader(x.resp.Body, maxPropfindBody), urlPath(u))
			x.discard()
			if err != nil {
				if ctx.Err() != nil {
					return 0, false, fmt.Errorf("%s: %w", op, context.Cause(ctx))
				}
				if errors.Is(context.Cause(x.rctx), errStalled) {
					return 0, false, newErr(targets.KindTimeout, op, x.resp.StatusCode, err)
				}
				return 0, false, newErr(targets.KindUnknown, op, x.resp.StatusCode, err)
			}
			return 0, false, nil
		case http.StatusNotFound, http.StatusGone:
			x.discard()
			return 0, false, notFoundErr(op, x.resp.StatusCode)
		}
		x.discard()
		ra, ok := t.retryAfter(x.resp)
		return ra, ok, statusErr(op, x.resp)
	})
	return entries, err
}

type multistatus struct {
	Responses []struct {
		Href      string `xml:"DAV: href"`
		Propstats []struct {
			Status string `xml:"DAV: status"`
			Prop   struct {
				ResourceType struct {
					Collection *struct{} `xml:"DAV: collection"`
				} `xml:"DAV: resourcetype"`
				ContentLength string `xml:"DAV: getcontentlength"`
				LastModified  string `xml:"DAV: getlastmodified"`
			} `xml:"DAV: prop"`
		} `xml:"DAV: propstat"`
	} `xml:"DAV: response"`
}

// parseMultistatus reads a PROPFIND answer, dropping the entry for self (the decoded path of
// the collection that was listed).
func parseMultistatus(r io.Reader, self string) ([]Entry, error) {
	var ms multistatus
	if err := xml.NewDecoder(r).Decode(&ms); err != nil {
		return nil, fmt.Errorf("PROPFIND answer is not a readable multistatus: %w", err)
	}
	self = strings.TrimSuffix(self, "/")
	entries := make([]Entry, 0, len(ms.Responses))
	for _, resp := range ms.Responses {
		p := hrefPath(resp.Href)
		trimmed := strings.TrimSuffix(p, "/")
		if trimmed == self || trimmed == "" {
			continue
		}
		e := Entry{Href: p, Name: path.Base(trimmed), Kind: KindFile}
		for _, ps := range resp.Propstats {
			if !propstatOK(ps.Status) {
				continue
			}
			if ps.Prop.ResourceType.Collection != nil {
				e.Kind = KindDir
			}
			if n, err := strconv.ParseInt(strings.TrimSpace(ps.Prop.ContentLength), 10, 64); err == nil && n >= 0 {
				e.Size = n
			}
			if tm, err := http.ParseTime(strings.TrimSpace(ps.Prop.LastModified)); err == nil {
				e.MTime = tm.UTC()
			}
		}
		if e.Kind == KindDir {
			e.Size = 0
		}
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return entries, nil
}

// propstatOK accepts "HTTP/1.1 200 OK" and also a missing status, which some servers omit.
func propstatOK(status string) bool {
	f := strings.Fields(status)
	return len(f) < 2 || f[1] == "200"
}

// hrefPath decodes an href, which may be an absolute URL or a path.
func hrefPath(href string) string {
	href = strings.TrimSpace(href)
	if u, err := url.Parse(href); err == nil {
		return u.Path
	}
	if p, err := url.PathUnescape(href); err == nil {
		return p
	}
	return href
}
