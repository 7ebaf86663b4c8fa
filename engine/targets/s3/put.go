package s3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/bastion-backup/bastion/engine/targets"
)

// abortTimeout bounds the AbortMultipartUpload sent after a failed or canceled upload.
const abortTimeout = 30 * time.Second

// Put stores exactly size bytes from body as run/name: one PUT when size fits in a part,
// else a multipart upload in PartSizeBytes parts, sent one after the other straight from body.
// Each request carries the Content-MD5 of its bytes, computed in a first pass over the same
// range of body, so the service refuses anything that did not arrive intact (and a body that
// changed between the passes). The object appears only when the single PUT or the multipart
// completion succeeds; a failed multipart upload is aborted.
func (t *Target) Put(ctx context.Context, run targets.RunRef, name string, body io.ReadSeeker, size int64) (bool, error) {
	op := "put " + name
	if err := checkArgs(run, name); err != nil {
		return false, newErr(targets.KindConfig, op, 0, err)
	}
	if size < 0 {
		return false, newErr(targets.KindConfig, op, 0, errors.New("negative size"))
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	if !targets.AlwaysRewrite(name) {
		n, err := t.Size(ctx, run, name)
		switch {
		case err == nil && n == size:
			return true, nil
		case err != nil && !errors.Is(err, targets.ErrNotExist):
			return false, err
		}
	}
	key := t.key(run, name)
	if size <= t.cfg.PartSizeBytes {
		return false, t.putSingle(ctx, op, key, &section{r: body, size: size})
	}
	return false, t.putMultipart(ctx, op, key, body, size)
}

func (t *Target) putSingle(ctx context.Context, op, key string, sec *section) error {
	sum, err := sec.md5(ctx)
	if err != nil {
		return classify(ctx, op, err)
	}
	return t.withRetries(ctx, op, t.maxPut, func() error {
		if _, err := sec.Seek(0, io.SeekStart); err != nil {
			return err
		}
		_, err := t.core.PutObject(ctx, t.cfg.Bucket, key, sec, sec.size, sum, "", minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true})
		return err
	})
}

func (t *Target) putMultipart(ctx context.Context, op, key string, body io.ReadSeeker, size int64) (err error) {
	partSize := t.cfg.PartSizeBytes
	if (size+partSize-1)/partSize > maxParts {
		// S3 allows 10 000 parts: grow the part size (to whole MiB) rather than fail.
		partSize = ((size+maxParts-1)/maxParts + 1<<20 - 1) &^ (1<<20 - 1)
	}
	var uploadID string
	err = t.withRetries(ctx, op+": start multipart upload", otherAttempts, func() error {
		var err error
		uploadID, err = t.core.NewMultipartUpload(ctx, t.cfg.Bucket, key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
		return err
	})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			t.abort(ctx, key, uploadID)
		}
	}()
	var parts []minio.CompletePart
	for n, off := 1, int64(0); off < size; n, off = n+1, off+partSize {
		sec := &section{r: body, base: off, size: min(partSize, size-off)}
		partOp := fmt.Sprintf("%s: part %d", op, n)
		sum, err := sec.md5(ctx)
		if err != nil {
			return classify(ctx, partOp, err)
		}
		var part minio.ObjectPart
		err = t.withRetries(ctx, partOp, t.maxPut, func() error {
			if _, err := sec.Seek(0, io.SeekStart); err != nil {
				return err
			}
			var err error
			part, err = t.core.PutObjectPart(ctx, t.cfg.Bucket, key, uploadID, n, sec, sec.size, minio.PutObjectPartOptions{Md5Base64: sum, DisableContentSha256: true})
			return err
		})
		if err != nil {
			return err
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: part.ETag})
	}
	completeOp := op + ": complete multipart upload"
	err = t.withRetries(ctx, completeOp, otherAttempts, func() error {
		_, err := t.core.CompleteMultipartUpload(ctx, t.cfg.Bucket, key, uploadID, parts, minio.PutObjectOptions{})
		return err
	})
	var te *targets.Error
	if errors.As(err, &te) && te.Attempts > 1 {
		// A completion retried after its answer was lost finds the upload gone (NoSuchUpload)
		// while the object exists. Put got here because no object of this size existed (the
		// metadata files it always rewrites are far smaller than a part), so an object of
		// exactly this size now is the one just completed.
		info, serr := t.core.StatObject(ctx, t.cfg.Bucket, key, minio.StatObjectOptions{})
		if serr == nil && info.Size == size {
			return nil
		}
	}
	return err
}

// abort removes the parts of a failed upload. It runs even when ctx was canceled (that is
// often why the upload failed); a failure is only logged: the parts are invisible, and a
// bucket lifecycle rule or the next cleanup of the run removes them.
func (t *Target) abort(ctx context.Context, key, uploadID string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	if err := t.core.AbortMultipartUpload(actx, t.cfg.Bucket, key, uploadID); err != nil {
		t.log.Warn().Str("key", key).Err(classify(actx, "abort multipart upload", err)).Msg("could not abort a failed multipart upload")
	}
}

// section reads size bytes of r from base. It is what each request sends: seeking it to 0
// seeks r to base, so a retry re-reads the same bytes without any copy held in memory.
type section struct {
	r          io.ReadSeeker
	base, size int64
	off        int64
}

func (s *section) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	if int64(len(p)) > s.size-s.off {
		p = p[:s.size-s.off]
	}
	n, err := s.r.Read(p)
	s.off += int64(n)
	switch {
	case err == io.EOF && s.off < s.size:
		return n, errShortBody
	case err == io.EOF:
		return n, nil
	case err != nil:
		return n, &errBodyRead{err}
	}
	return n, nil
}

func (s *section) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.off
	case io.SeekEnd:
		offset += s.size
	default:
		return 0, errors.New("section: bad whence")
	}
	if offset < 0 || offset > s.size {
		return 0, errors.New("section: offset out of range")
	}
	if _, err := s.r.Seek(s.base+offset, io.SeekStart); err != nil {
		return 0, &errBodyRead{fmt.Errorf("seek: %w", err)}
	}
	s.off = offset
	return offset, nil
}

// md5 reads the whole section and returns its base64 MD5 for Content-MD5. It leaves the
// section at its end; senders seek it back first.
func (s *section) md5(ctx context.Context) (string, error) {
	if _, err := s.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	h := md5.New()
	n, err := io.Copy(h, s)
	if err != nil {
		return "", err
	}
	if n != s.size {
		return "", errShortBody
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}
