package backup

import (
	"errors"
	"io"
	"sync"
)

// handoffWriter hands what is written to a goroutine that writes it to w, so the writer's work
// (age encryption, part hashing, the part files) runs beside compression instead of inside
// zstd's output step. It holds at most handoffDepth chunks: when w is slower, Write blocks, so
// memory stays flat. The first error of w is returned by every later Write and by Close.
type handoffWriter struct {
	w       io.Writer
	chunks  chan []byte
	free    chan []byte
	done    chan struct{}
	errOnce sync.Once
	err     error
	failed  chan struct{}
	closed  bool   // only the writing goroutine reads and sets it
	cancel  func() // unblocks a w that waits (an upload's backpressure)
}

const (
	handoffDepth = 8
	handoffChunk = 256 << 10
)

// newHandoffWriter starts the goroutine. cancel must make a blocked w.Write return; abort
// calls it.
func newHandoffWriter(w io.Writer, cancel func()) *handoffWriter {
	h := &handoffWriter{
		w:      w,
		cancel: cancel,
		chunks: make(chan []byte, handoffDepth),
		free:   make(chan []byte, handoffDepth+1),
		done:   make(chan struct{}),
		failed: make(chan struct{}),
	}
	go h.loop()
	return h
}

func (h *handoffWriter) loop() {
	defer close(h.done)
	for c := range h.chunks {
		if h.failure() == nil {
			if _, err := h.w.Write(c); err != nil {
				h.fail(err)
			}
		}
		select {
		case h.free <- c[:0]:
		default:
		}
	}
}

func (h *handoffWriter) fail(err error) {
	h.errOnce.Do(func() {
		h.err = err
		close(h.failed)
	})
}

func (h *handoffWriter) failure() error {
	select {
	case <-h.failed:
		return h.err
	default:
		return nil
	}
}

func (h *handoffWriter) buffer() []byte {
	select {
	case b := <-h.free:
		return b
	default:
		return make([]byte, 0, handoffChunk)
	}
}

// Write copies p into chunks and queues them; p may be reused once Write returns.
func (h *handoffWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if err := h.failure(); err != nil {
			return written, err
		}
		b := h.buffer()
		n := min(len(p), cap(b))
		b = append(b, p[:n]...)
		select {
		case h.chunks <- b:
		case <-h.failed:
			return written, h.err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// Close waits until everything queued was written and returns the first error.
func (h *handoffWriter) Close() error {
	if !h.closed {
		h.closed = true
		close(h.chunks)
	}
	<-h.done
	return h.failure()
}

// abort drops what is still queued and ends the goroutine; a w blocked on an upload nobody
// will finish is canceled, not waited for. It does nothing after Close.
func (h *handoffWriter) abort() {
	if h.closed {
		return
	}
	h.closed = true
	h.fail(errAborted)
	h.cancel()
	close(h.chunks)
	<-h.done
}

var errAborted = errors.New("packing was abandoned")
