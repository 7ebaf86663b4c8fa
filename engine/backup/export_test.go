package backup

import (
	"sync"
	"sync/atomic"
)

// Per-path fault injection behind the package's test seams. The seams are set once, before any
// test runs, so parallel tests never race on them; each test keys its faults by its own paths.
var openFaults, beforeOpen, afterCopy sync.Map

// ReadAheadLeftOver adds up what read-ahead queues still counted once drained (queued bytes and
// large buffers), over every run of the test binary: anything but 0 is a bookkeeping error.
var ReadAheadLeftOver atomic.Int64

func init() {
	openHook = func(p string) error {
		if fn, ok := beforeOpen.Load(p); ok {
			fn.(func())()
		}
		if err, ok := openFaults.Load(p); ok {
			return err.(error)
		}
		return nil
	}
	drainedHook = func(q int64) { ReadAheadLeftOver.Add(q) }
	afterCopyHook = func(p string) {
		if fn, ok := afterCopy.Load(p); ok {
			fn.(func())()
		}
	}
}

// InjectOpenFault makes opening path fail with err (fault injection).
func InjectOpenFault(path string, err error) { openFaults.Store(path, err) }

// InjectBeforeOpen runs fn right before path is opened or read (file, symlink or directory),
// after the walk listed it.
func InjectBeforeOpen(path string, fn func()) { beforeOpen.Store(path, fn) }

// InjectAfterCopy runs fn right after path's body was archived, before the consistency check.
func InjectAfterCopy(path string, fn func()) { afterCopy.Store(path, fn) }

// SequentialReads turns read-ahead off for r: for tests whose hooks change one file while
// another is being archived.
func SequentialReads(r Request) Request {
	r.sequentialReads = true
	return r
}
