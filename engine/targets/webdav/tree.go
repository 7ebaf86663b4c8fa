package webdav

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/retrying"
)

// Tree writes below one collection of a server, the Target's base URL, by slash-separated paths
// relative to it: a restore's destination prefix. It is the same client as the run-oriented
// Target (auth, timeouts, limits, error kinds) and its requests are retried by
// engine/targets/retrying under RetryPolicy.
//
// No request leaves the collection, whatever the path: every segment is percent-encoded whole
// (so "%2e%2e" and "a%2fb" are names on the server, never a step up or a separator), and empty,
// "." and ".." segments, NUL and backslash are refused with an error matching
// targets.ErrInvalidPath before anything is sent.
type Tree struct {
	t *Target
	r *retrying.Target
}

// Tree returns the Target's base collection as a Tree.
func (t *Target) Tree() *Tree {
	return &Tree{t: t, r: t.WithRetries().(*retrying.Target)}
}

// TreeOf returns the Tree of a target its driver opened (Config.Open wraps it in retries);
// false for a target of another driver.
func TreeOf(tg targets.Target) (*Tree, bool) {
	for {
		switch x := tg.(type) {
		case *Target:
			return x.Tree(), true
		case interface{ Unwrap() targets.Target }:
			tg = x.Unwrap()
		default:
			return nil, false
		}
	}
}

// JoinURL is the collection prefix (a slash-separated path, "" for the base itself) below
// baseURL, ending in "/", each segment percent-encoded like Tree paths. baseURL must be a valid
// base URL without credentials; prefix may not have empty, "." or ".." segments. Errors never
// quote the URL.
func JoinURL(baseURL, prefix string) (string, error) {
	base, _, err := normalizeBase(baseURL)
	if err != nil {
		return "", err
	}
	segs, err := splitPath(prefix)
	if err != nil {
		return "", err
	}
	for _, s := range segs {
		base += escapeSegment(s) + "/"
	}
	return base, nil
}

// URL is the collection's URL, without credentials.
func (tr *Tree) URL() string { return tr.t.base }

// url is the URL of rel below the collection; "" is the collection itself.
func (tr *Tree) url(op, rel string, collection bool) (string, error) {
	segs, err := splitPath(rel)
	if err != nil {
		return "", newErr(targets.KindConfig, op, 0, err)
	}
	u := tr.t.base
	for i, s := range segs {
		if i > 0 {
			u += "/"
		}
		u += escapeSegment(s)
	}
	switch {
	case len(segs) == 0 && !collection:
		return "", newErr(targets.KindConfig, op, 0, fmt.Errorf("a file needs a name: %w", targets.ErrInvalidPath))
	case collection && len(segs) > 0:
		u += "/"
	}
	return u, nil
}

// Mkcol makes collection rel ("" the Tree's own), and parents that are missing, also above the
// Tree's root. An existing collection is fine.
func (tr *Tree) Mkcol(ctx context.Context, rel string) error {
	u, err := tr.url("mkcol /"+rel, rel, true)
	if err != nil {
		return err
	}
	return tr.r.Do(ctx, retrying.OpPut, func() error { return tr.t.mkcolAll(ctx, u) })
}

// Size returns the size of file rel from a HEAD request, or an error matching
// targets.ErrNotExist.
func (tr *Tree) Size(ctx context.Context, rel string) (int64, error) {
	op := "head /" + rel
	u, err := tr.url(op, rel, false)
	if err != nil {
		return 0, err
	}
	var size int64
	err = tr.r.Do(ctx, retrying.OpSize, func() error {
		var herr error
		size, herr = tr.t.head(ctx, op, u)
		return herr
	})
	return size, err
}

// Delete removes file rel; a file that is not there is fine.
func (tr *Tree) Delete(ctx context.Context, rel string) error {
	op := "delete /" + rel
	u, err := tr.url(op, rel, false)
	if err != nil {
		return err
	}
	return tr.r.Do(ctx, retrying.OpDelete, func() error {
		status, err := tr.t.delete(ctx, op, u)
		if err != nil {
			return err
		}
		if status/100 != 2 && status != http.StatusNotFound && status != http.StatusGone {
			return statusCodeErr(op, status)
		}
		return nil
	})
}

// Put stores exactly size bytes of body as file rel (its collection must exist), rewinding body
// before each attempt.
func (tr *Tree) Put(ctx context.Context, rel string, body io.ReadSeeker, size int64) error {
	op := "put /" + rel
	u, err := tr.url(op, rel, false)
	if err != nil {
		return err
	}
	if size < 0 {
		return newErr(targets.KindConfig, op, 0, fmt.Errorf("negative size %d", size))
	}
	return tr.r.Do(ctx, retrying.OpPut, func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return tr.t.put(ctx, op, u, body, size)
	})
}
