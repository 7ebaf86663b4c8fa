package webdav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/bastion-backup/bastion/engine/targets"
)

// Open streams run/name with one GET; RetryPolicy retries it on 408/429/502/503/504 and network
// failures, including a connection that breaks before the first body byte reaches the caller.
// Once bytes have been returned a failure ends the stream. A body shorter than its
// Content-Length ends with an integrity error. The request timeout applies between reads too:
// a caller that stops reading for that long loses the stream.
func (t *Target) Open(ctx context.Context, run targets.RunRef, name string) (io.ReadCloser, error) {
	op := "get " + name
	if err := checkArgs(run, name); err != nil {
		return nil, newErr(targets.KindConfig, op, 0, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	r := &getReader{t: t, ctx: ctx, op: op, u: t.fileURL(run, name)}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

type getReader struct {
	t       *Target
	ctx     context.Context
	op, u   string
	x       *exchange
	tries   int   // GET requests sent
	read    int64 // bytes returned to the caller
	pending error // a read error held back while bytes that came with it are returned
	closed  bool
}

// open sends one GET.
func (r *getReader) open() error {
	return r.t.once(func() (time.Duration, bool, error) {
		r.tries++
		x, err := r.t.send(r.ctx, r.op, http.MethodGet, r.u, nil, 0, nil)
		if err != nil {
			return 0, false, err
		}
		switch x.resp.StatusCode {
		case http.StatusOK:
			r.x = x
			return 0, false, nil
		case http.StatusNotFound, http.StatusGone:
			x.discard()
			return 0, false, notFoundErr(r.op, x.resp.StatusCode)
		}
		x.discard()
		ra, ok := r.t.retryAfter(x.resp)
		return ra, ok, statusErr(r.op, x.resp)
	})
}

func (r *getReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("read after close")
	}
	if r.pending != nil {
		return 0, r.pending
	}
	for {
		n, err := r.x.resp.Body.Read(p)
		if n > 0 {
			r.x.wd.touch()
			r.read += int64(n)
		}
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, io.EOF):
			if cl := r.x.resp.ContentLength; cl >= 0 && r.read != cl {
				r.pending = newErr(targets.KindIntegrity, r.op, http.StatusOK, fmt.Errorf("got %d bytes, Content-Length said %d", r.read, cl))
				return n, r.pending
			}
			return n, io.EOF
		}
		// A stream that breaks before its first byte is reopened by engine/targets/retrying.
		e := transportErr(r.ctx, r.x.rctx, r.op, err)
		r.pending = e
		if n > 0 {
			return n, nil
		}
		return 0, e
	}
}

func (r *getReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.x != nil {
		r.x.resp.Body.Close()
		r.x.release()
	}
	return nil
}
