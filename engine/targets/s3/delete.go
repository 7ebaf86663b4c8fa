package s3

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/minio/minio-go/v7"

	"github.com/bastion-backup/bastion/engine/targets"
)

// maxDeleteRounds bounds the list-and-delete rounds of one run: with 1000 keys a page, a run
// of ten million objects. It only stops a service that keeps listing what it said it deleted.
const maxDeleteRounds = 10000

// CleanupRun deletes what an incomplete run left: every object under the run's prefix and any
// unfinished multipart upload there. It never touches a run whose complete.json exists: that
// is checked by HEAD first, and again in each listing page before anything in it is deleted
// (complete.json sorts before every other file of a run, so it is in the first page).
func (t *Target) CleanupRun(ctx context.Context, run targets.RunRef) (targets.CleanupResult, error) {
	op := "cleanup " + run.JobID + "/" + run.RunID
	if err := targets.ValidateRun(run); err != nil {
		return "", newErr(targets.KindConfig, op, 0, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	_, err := t.Size(ctx, run, targets.CompleteName)
	switch {
	case err == nil:
		return targets.CleanupSkipComplete, nil
	case !errors.Is(err, targets.ErrNotExist):
		return "", err
	}
	n, err := t.deletePrefix(ctx, op, t.runPrefix(run), t.key(run, targets.CompleteName))
	if errors.Is(err, errCompleteAppeared) {
		return targets.CleanupSkipComplete, nil
	}
	if err != nil {
		return "", err
	}
	if n == 0 {
		return targets.CleanupSkipNotFound, nil
	}
	return targets.CleanupDeleted, nil
}

// DeleteRun deletes every object under the run's prefix, complete or not, and any unfinished
// multipart upload there.
func (t *Target) DeleteRun(ctx context.Context, run targets.RunRef) (targets.DeleteResult, error) {
	op := "delete " + run.JobID + "/" + run.RunID
	if err := targets.ValidateRun(run); err != nil {
		return "", newErr(targets.KindConfig, op, 0, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	n, err := t.deletePrefix(ctx, op, t.runPrefix(run), "")
	if err != nil {
		return "", err
	}
	if n == 0 {
		return targets.DeleteNotFound, nil
	}
	return targets.DeleteDeleted, nil
}

var errCompleteAppeared = errors.New("complete.json appeared during cleanup")

// deletePrefix deletes the objects under prefix in rounds: list the first page (the keys
// deleted before are gone, so no continuation token can go stale), delete it with one
// DeleteObjects request, repeat until the listing is empty. A round that fails is retried as a
// whole. If guard is listed, nothing of that page is deleted and errCompleteAppeared returned.
// It returns how many objects and unfinished uploads it removed.
func (t *Target) deletePrefix(ctx context.Context, op, prefix, guard string) (int, error) {
	deleted := 0
	var last []string
	for round := 0; ; round++ {
		if round >= maxDeleteRounds {
			return deleted, newErr(targets.KindUnknown, op, 0, fmt.Errorf("more than %d listing rounds; delete the run in the bucket", maxDeleteRounds))
		}
		var keys []string
		err := t.withRetries(ctx, op, otherAttempts, func() error {
			var err error
			keys, err = t.listPage(ctx, prefix)
			if err != nil || len(keys) == 0 {
				return err
			}
			if guard != "" && slices.Contains(keys, guard) {
				return errCompleteAppeared
			}
			return t.deleteKeys(ctx, keys)
		})
		if errors.Is(err, errCompleteAppeared) {
			return deleted, err
		}
		if err != nil {
			return deleted, err
		}
		if len(keys) == 0 {
			break
		}
		if last != nil && slices.Equal(keys, last) {
			return deleted, newErr(targets.KindUnknown, op, 0, errors.New("the service keeps listing objects it reported deleted"))
		}
		last = keys
		deleted += len(keys)
	}
	return deleted + t.abortUploads(ctx, prefix), nil
}

func (t *Target) listPage(ctx context.Context, prefix string) ([]string, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing after the first page
	var keys []string
	for obj := range t.core.ListObjectsIter(lctx, t.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, MaxKeys: t.page}) {
		if obj.Err != nil {
			return nil, obj.Err
		}
		keys = append(keys, obj.Key)
		if len(keys) == t.page {
			break
		}
	}
	return keys, nil
}

// deleteKeys sends one DeleteObjects request (len(keys) <= 1000). Any key not deleted fails
// the round; the first such error is returned.
func (t *Target) deleteKeys(ctx context.Context, keys []string) error {
	objs := func(yield func(minio.ObjectInfo) bool) {
		for _, k := range keys {
			if !yield(minio.ObjectInfo{Key: k}) {
				return
			}
		}
	}
	results, err := t.core.RemoveObjectsWithIter(ctx, t.cfg.Bucket, objs, minio.RemoveObjectsOptions{})
	if err != nil {
		return err
	}
	var first error
	for res := range results {
		if res.Err != nil && first == nil {
			first = res.Err
		}
	}
	return first
}

// abortUploads aborts unfinished multipart uploads under prefix (a Put cut off before it
// could abort). Failures are only logged: the parts are invisible, and some services do not
// let every key list uploads.
func (t *Target) abortUploads(ctx context.Context, prefix string) int {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	for up := range t.core.ListIncompleteUploads(lctx, t.cfg.Bucket, prefix, true) {
		if up.Err != nil {
			t.log.Warn().Str("prefix", prefix).Err(classify(ctx, "list multipart uploads", up.Err)).Msg("could not list unfinished uploads")
			break
		}
		if err := t.core.AbortMultipartUpload(ctx, t.cfg.Bucket, up.Key, up.UploadID); err != nil {
			t.log.Warn().Str("key", up.Key).Err(classify(ctx, "abort multipart upload", err)).Msg("could not abort an unfinished upload")
			continue
		}
		n++
	}
	return n
}
