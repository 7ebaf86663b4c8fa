package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/targets"
)

// uploader drains closed parts from a channel of capacity 1 and stores them on the target,
// deleting each local part after it was stored. While it works on one part and another waits in
// the channel, a third is being written, so at most three parts sit on staging; a full channel
// blocks packaging. When a Put fails the uploader stops, cancels packaging through cancel, and
// every later send returns its error: the root cause of the run's failure.
type uploader struct {
	target targets.Target
	run    targets.RunRef
	log    zerolog.Logger
	cancel context.CancelCauseFunc
	// stopCtx cancels the uploader's own context (stop, and cleanup after finish).
	stopCtx context.CancelFunc

	ch   chan closedPart
	done chan struct{}

	mu      sync.Mutex
	err     error
	bytes   int64
	onBytes func(total int64)
}

func startUploader(ctx context.Context, target targets.Target, run targets.RunRef, log zerolog.Logger,
	cancel context.CancelCauseFunc, onBytes func(int64)) *uploader {
	// The uploader's own context lets stop() abandon a part in flight without canceling the run.
	uctx, stopCtx := context.WithCancel(ctx)
	u := &uploader{target: target, run: run, log: log, cancel: cancel, ch: make(chan closedPart, 1),
		done: make(chan struct{}), onBytes: onBytes, stopCtx: stopCtx}
	go u.loop(uctx)
	return u
}

func (u *uploader) loop(ctx context.Context) {
	defer close(u.done)
	for p := range u.ch {
		if err := putFile(ctx, u.target, u.run, p.Name, p.Path, p.Size); err != nil {
			u.mu.Lock()
			u.err = err
			u.mu.Unlock()
			u.cancel(err)
			return
		}
		if err := os.Remove(p.Path); err != nil {
			u.log.Warn().Err(err).Str("part", p.Name).Msg("remove uploaded part from staging")
		}
		u.mu.Lock()
		u.bytes += p.Size
		total := u.bytes
		u.mu.Unlock()
		if u.onBytes != nil {
			u.onBytes(total)
		}
	}
}

// send hands a part to the uploader, blocking while the channel is full.
func (u *uploader) send(ctx context.Context, p closedPart) error {
	select {
	case u.ch <- p:
		return nil
	case <-u.done:
		return u.failure()
	case <-ctx.Done():
		if err := u.failure(); err != nil {
			return err
		}
		return context.Cause(ctx)
	}
}

// finish waits for every sent part to be stored and returns the upload error, if any.
func (u *uploader) finish() error {
	close(u.ch)
	<-u.done
	u.stopCtx()
	return u.failure()
}

// stop abandons the upload: it cancels the part in flight (packing failed, so it would be
// thrown away), closes the channel and waits for the loop. After finish it does nothing.
func (u *uploader) stop() {
	select {
	case <-u.done:
	default:
		u.stopCtx()
		close(u.ch)
		for range u.ch {
		}
		<-u.done
	}
}

func (u *uploader) failure() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// putFile stores the local file path as run/name.
func putFile(ctx context.Context, t targets.Target, run targets.RunRef, name, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return newErr(CodeStagingIO, KindIO, "Check the data directory.", fmt.Errorf("open %s for upload: %w", name, err))
	}
	defer f.Close()
	if _, err := t.Put(ctx, run, name, f, size); err != nil {
		return uploadError(ctx, name, err)
	}
	return nil
}

// uploadError keeps a target's classification and gives plain errors one.
func uploadError(ctx context.Context, name string, err error) error {
	var te *targets.Error
	if errors.As(err, &te) {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("upload %s: %w", name, context.Cause(ctx))
	}
	return &Error{Code: CodeUpload, Kind: targets.KindUnknown, Hint: "The target refused the upload; see the message.",
		Err: fmt.Errorf("upload %s: %w", name, err)}
}
