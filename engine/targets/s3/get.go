package s3

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/bastion-backup/bastion/engine/targets"
)

// Size returns the size of run/name (HEAD), or an error matching targets.ErrNotExist.
func (t *Target) Size(ctx context.Context, run targets.RunRef, name string) (int64, error) {
	op := "head " + name
	if err := checkArgs(run, name); err != nil {
		return 0, newErr(targets.KindConfig, op, 0, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	var size int64
	err := t.withRetries(ctx, op, otherAttempts, func() error {
		info, err := t.core.StatObject(ctx, t.cfg.Bucket, t.key(run, name), minio.StatObjectOptions{})
		size = info.Size
		return err
	})
	return size, err
}

// Open streams run/name. The GET is retried until the service answers; once the answer is
// there, a failure ends the stream (the caller restarts). A body that ends before the
// object's size ends with a network error (the connection closed early).
func (t *Target) Open(ctx context.Context, run targets.RunRef, name string) (io.ReadCloser, error) {
	op := "get " + name
	if err := checkArgs(run, name); err != nil {
		return nil, newErr(targets.KindConfig, op, 0, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var rc io.ReadCloser
	var size int64
	err := t.withRetries(ctx, op, otherAttempts, func() error {
		r, info, _, err := t.core.GetObject(ctx, t.cfg.Bucket, t.key(run, name), minio.GetObjectOptions{})
		rc, size = r, info.Size
		return err
	})
	if err != nil {
		return nil, err
	}
	return &getReader{ctx: ctx, op: op, rc: rc, size: size}, nil
}

type getReader struct {
	ctx  context.Context
	op   string
	rc   io.ReadCloser
	size int64
	read int64
}

func (r *getReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.read += int64(n)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF) && r.read == r.size:
		return n, io.EOF
	case errors.Is(err, io.EOF):
		return n, newErr(targets.KindIntegrity, r.op, 0, fmt.Errorf("download ended after %d of %d bytes", r.read, r.size))
	}
	return n, classify(r.ctx, r.op, err)
}

func (r *getReader) Close() error { return r.rc.Close() }
