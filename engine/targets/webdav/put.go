package webdav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/engine/targets"
)

// Put stores body as run/name: MKCOL the run collection (once per Target), HEAD the file and
// skip it when its size already matches (never for manifest.json and complete.json), else PUT
// with retries.
func (t *Target) Put(ctx context.Context, run targets.RunRef, name string, body io.ReadSeeker, size int64) (bool, error) {
	op := "put " + name
	if err := checkArgs(run, name); err != nil {
		return false, newErr(targets.KindConfig, op, 0, err)
	}
	if size < 0 {
		return false, newErr(targets.KindConfig, op, 0, fmt.Errorf("negative size %d", size))
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	cached, err := t.ensureRun(ctx, run)
	if err != nil {
		return false, err
	}
	if err := t.ensureParents(ctx, run, name); err != nil {
		return false, err
	}
	u := t.fileURL(run, name)
	if !targets.AlwaysRewrite(name) {
		n, err := t.head(ctx, "head "+name, u)
		switch {
		case err == nil && n == size:
			return true, nil
		case err != nil && !errors.Is(err, targets.ErrNotExist):
			return false, err
		}
	}
	err = t.put(ctx, op, u, body, size)
	var te *targets.Error
	if cached && errors.As(err, &te) && te.HTTPStatus == http.StatusConflict {
		// The run collection this Target made earlier is gone (deleted on the server or by
		// another process): make it again and try once more.
		t.forget(run)
		if _, err := t.ensureRun(ctx, run); err != nil {
			return false, err
		}
		if err := t.ensureParents(ctx, run, name); err != nil {
			return false, err
		}
		err = t.put(ctx, op, u, body, size)
	}
	return false, err
}

func (t *Target) put(ctx context.Context, op, u string, body io.ReadSeeker, size int64) error {
	header := http.Header{"Content-Type": {"application/octet-stream"}}
	return t.once(func() (time.Duration, bool, error) {
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return 0, false, newErr(targets.KindIO, op, 0, fmt.Errorf("rewind local data: %w", err))
		}
		x, err := t.send(ctx, op, http.MethodPut, u, newAttemptBody(ctx, body, size), size, header)
		if err != nil {
			return 0, false, err
		}
		defer x.discard()
		switch x.resp.StatusCode {
		case http.StatusOK, http.StatusCreated, http.StatusNoContent:
			return 0, false, nil
		}
		ra, ok := t.retryAfter(x.resp)
		return ra, ok, statusErr(op, x.resp)
	})
}

// ensureRun makes the job and run collections unless this Target already did. cached reports
// that nothing was sent.
func (t *Target) ensureRun(ctx context.Context, run targets.RunRef) (cached bool, err error) {
	return t.ensureOnce(ctx, run.JobID+"/"+run.RunID, func() error {
		if err := t.mkcolAll(ctx, t.jobURL(run)); err != nil {
			return err
		}
		return t.mkcolAll(ctx, t.Location(run))
	})
}

// ensureParents makes the collections below the run collection that a raw_tree_v1 body
// (data/<path>) lives in, each once per Target, outermost first.
func (t *Target) ensureParents(ctx context.Context, run targets.RunRef, name string) error {
	segs := strings.Split(name, "/")
	u := t.Location(run)
	for _, s := range segs[:len(segs)-1] {
		u += escapeSegment(s) + "/"
		dir := u
		if _, err := t.ensureOnce(ctx, dir, func() error { return t.mkcol(ctx, dir) }); err != nil {
			return err
		}
	}
	return nil
}

// ensureOnce runs mk for key unless it succeeded before for this Target. Concurrent calls for
// one key wait for a single attempt: servers such as rclone answer 423 Locked to a MKCOL racing
// another on the same path.
func (t *Target) ensureOnce(ctx context.Context, key string, mk func() error) (cached bool, err error) {
	for {
		t.mu.Lock()
		if t.created[key] {
			t.mu.Unlock()
			return true, nil
		}
		inflight, waiting := t.making[key]
		if !waiting {
			inflight = make(chan struct{})
			t.making[key] = inflight
		}
		t.mu.Unlock()
		if !waiting {
			break
		}
		select {
		case <-inflight: // made, or failed: look again and maybe try ourselves
		case <-ctx.Done():
			return false, fmt.Errorf("mkcol %s: %w", key, context.Cause(ctx))
		}
	}
	err = mk()
	t.mu.Lock()
	if err == nil {
		// A long-lived Target sees many runs, and a raw tree many collections; forgetting costs
		// one MKCOL each.
		if len(t.created) >= 1<<16 {
			clear(t.created)
		}
		t.created[key] = true
	}
	close(t.making[key])
	delete(t.making, key)
	t.mu.Unlock()
	return false, err
}

// forget drops what this Target remembers having made for run: the run collection and the
// data/ collections below it.
func (t *Target) forget(run targets.RunRef) {
	loc := t.Location(run)
	t.mu.Lock()
	delete(t.created, run.JobID+"/"+run.RunID)
	for k := range t.created {
		if strings.HasPrefix(k, loc) {
			delete(t.created, k)
		}
	}
	t.mu.Unlock()
}

// mkcolAll makes collection u. A 409 means a parent is missing: walk up making parents (at most
// maxParentLevels), then back down.
func (t *Target) mkcolAll(ctx context.Context, u string) error {
	var pending []string
	for cur := u; ; {
		err := t.mkcol(ctx, cur)
		if err == nil {
			break
		}
		var te *targets.Error
		if !errors.As(err, &te) || te.HTTPStatus != http.StatusConflict {
			return err
		}
		parent, ok := parentCollection(cur)
		if !ok {
			return err
		}
		if len(pending) == maxParentLevels {
			return newErr(targets.KindConfig, "mkcol "+urlPath(u), http.StatusConflict,
				fmt.Errorf("more than %d parent collections are missing", maxParentLevels))
		}
		t.log.Debug().Str("collection", urlPath(cur)).Msg("parent collection missing; creating it first")
		pending = append(pending, cur)
		cur = parent
	}
	for i := len(pending) - 1; i >= 0; i-- {
		if err := t.mkcol(ctx, pending[i]); err != nil {
			return err
		}
	}
	return nil
}

func (t *Target) mkcol(ctx context.Context, u string) error {
	op := "mkcol " + urlPath(u)
	return t.once(func() (time.Duration, bool, error) {
		x, err := t.send(ctx, op, "MKCOL", u, nil, 0, nil)
		if err != nil {
			return 0, false, err
		}
		defer x.discard()
		// 405: the collection exists already.
		if x.resp.StatusCode/100 == 2 || x.resp.StatusCode == http.StatusMethodNotAllowed {
			return 0, false, nil
		}
		ra, ok := t.retryAfter(x.resp)
		return ra, ok, statusErr(op, x.resp)
	})
}

// parentCollection returns the collection URL one level up, or false at the server's root.
func parentCollection(u string) (string, bool) {
	i := strings.Index(u, "://")
	if i < 0 {
		return "", false
	}
	j := strings.IndexByte(u[i+3:], '/')
	if j < 0 {
		return "", false
	}
	host, p := u[:i+3+j], u[i+3+j:]
	p = strings.TrimSuffix(p, "/")
	k := strings.LastIndexByte(p, '/')
	if k <= 0 {
		return "", false
	}
	return host + p[:k+1], true
}

// urlPath is u's decoded path: what logs and error ops name (never the host's credentials,
// which a base URL cannot carry anyway).
func urlPath(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "?"
	}
	return pu.Path
}

// head returns the Content-Length of u, or an error matching targets.ErrNotExist.
func (t *Target) head(ctx context.Context, op, u string) (int64, error) {
	var size int64
	err := t.once(func() (time.Duration, bool, error) {
		x, err := t.send(ctx, op, http.MethodHead, u, nil, 0, nil)
		if err != nil {
			return 0, false, err
		}
		defer x.discard()
		switch x.resp.StatusCode {
		case http.StatusOK:
			if x.resp.ContentLength < 0 {
				return 0, false, newErr(targets.KindUnknown, op, http.StatusOK, errors.New("HEAD answer has no Content-Length"))
			}
			size = x.resp.ContentLength
			return 0, false, nil
		case http.StatusNotFound, http.StatusGone:
			return 0, false, notFoundErr(op, x.resp.StatusCode)
		}
		ra, ok := t.retryAfter(x.resp)
		return ra, ok, statusErr(op, x.resp)
	})
	return size, err
}

// Size returns the size of run/name from a HEAD request.
func (t *Target) Size(ctx context.Context, run targets.RunRef, name string) (int64, error) {
	op := "head " + name
	if err := checkArgs(run, name); err != nil {
		return 0, newErr(targets.KindConfig, op, 0, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	return t.head(ctx, op, t.fileURL(run, name))
}
