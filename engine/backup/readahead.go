package backup

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"

	"github.com/zeebo/blake3"
)

// Read-ahead: small regular files are opened, read, hashed and checked for changes by a few worker
// goroutines ahead of the archiver, so that the system calls of many small files (open, fstat,
// read, lstat, close) overlap with each other and with compression instead of running one after
// another. The archiver still writes every entry in walk order and records what it finds (open and
// read errors, changed files) in that order, so the archive, the index and the counts are the same
// as without it; only problems the walk itself finds (a file gone before its lstat) may be sampled
// ahead of those of the entries still queued. Larger files, and medium ones while the large-buffer
// budget is used up, are opened by a worker and streamed by the archiver.
const (
	readAheadMaxFile  = 256 << 10 // bigger files are streamed, not buffered
	readAheadWorkers  = 4         // system calls block threads, not cores; 4 overlap well on 2 cores
	readAheadSlots    = 256       // entries queued ahead of the archiver
	readAheadMaxBytes = 8 << 20   // bytes of small files queued ahead of the archiver
	// readAheadLargeBudget bounds the large buffers held at once: a file the walk only listed
	// is counted at listedCost until a worker knows its size, so the queue's byte count alone
	// would let a tree of 100–256 KiB files fill every slot with a large buffer.
	readAheadLargeBudget = 8 << 20
	// A worker takes files in batches, so that handing work over (a wake-up of a parked
	// thread each time) costs per batch, not per file.
	batchFiles   = 32
	batchBytes   = 1 << 20
	smallBufSize = 16 << 10 // most small files fit the small buffers
)

var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	largeBufs = sync.Pool{New: func() any { b := make([]byte, readAheadMaxFile); return &b }}
)

// pending is one walked entry waiting for the archiver. A file to read ahead belongs to a batch;
// once the batch is done, a worker has filled in the rest.
type pending struct {
	it    item
	batch *batch
	// cost is what the entry counts in readAhead.queued: its size, or for a listed file (size
	// unknown until a worker stats it) an estimate the worker replaces with the bytes it buffered.
	cost int64

	openErr error
	// f is set when a worker opened the file but left it to the archiver to write: too big to
	// buffer, a hard link to keep, or no large buffer left in the budget.
	f       srcFile
	budget  *atomic.Int64 // set while buf is a large buffer counted in readAhead.large
	fi      fs.FileInfo
	buf     *[]byte
	n       int    // bytes read into buf
	hash    string // of the bytes read and the zero padding of a file that shrank
	readErr error
	obs     observation
}

type batch struct {
	files []*pending
	bytes int64
	done  chan struct{}
}

// readAhead owns the workers and the queue of entries the archiver has not written yet.
type readAhead struct {
	work    chan *batch
	queue   []*pending
	queued  atomic.Int64 // bytes of the files in queue (workers correct the estimates)
	filling *batch       // the batch being filled, not handed to a worker yet
	wg      sync.WaitGroup
	// keepLinks (hardlink_policy keep): a listed file with more than one link is left to the
	// archiver, which resolves hard links in walk order.
	keepLinks bool
	large     atomic.Int64 // bytes of large buffers held by queued entries
}

// listedCost is what a listed file counts in the queue until a worker knows its size: most
// small files fit a small buffer. The worker then replaces it with the bytes it buffered; in the
// meantime the queue may hold more than readAheadMaxBytes, but its buffers stay bounded: small
// ones by the slots, large ones by readAheadLargeBudget.
const listedCost = smallBufSize

func startReadAhead(ctx context.Context, keepLinks bool) *readAhead {
	ra := &readAhead{work: make(chan *batch, readAheadSlots), keepLinks: keepLinks}
	for range readAheadWorkers {
		ra.wg.Add(1)
		go func() {
			defer ra.wg.Done()
			h := blake3.New() // a hasher is a few KiB: one per worker, not one per file
			for b := range ra.work {
				for _, p := range b.files {
					p.fetch(ctx, h, ra)
					if p.it.listed {
						buffered := int64(0)
						if p.buf != nil {
							buffered = p.fi.Size()
						}
						ra.queued.Add(buffered - p.cost)
						p.cost = buffered
					}
				}
				close(b.done)
			}
		}()
	}
	return ra
}

// bufferable reports whether it is worth reading ahead: a regular file small enough to buffer
// that is not a hard link the archiver must resolve in order.
func (a *archiver) bufferable(it item) bool {
	if it.listed {
		return true // a worker finds out, and leaves big files and hard links to the archiver
	}
	if !it.info.Mode().IsRegular() || it.info.Size() > readAheadMaxFile {
		return false
	}
	if a.hardlinks != nil && statID(it.info).Nlink > 1 {
		return false
	}
	return true
}

// dispatch hands the batch being filled to a worker. It never blocks: there are fewer batches
// than queued entries, and fewer of those than the channel holds.
func (ra *readAhead) dispatch() {
	if ra.filling != nil {
		ra.work <- ra.filling
		ra.filling = nil
	}
}

// enqueue adds a walked entry; once the queue is full, the oldest entries are written first.
func (a *archiver) enqueue(ctx context.Context, it item) error {
	ra := a.ra
	p := &pending{it: it}
	if !a.bufferable(it) {
		p.it.at = entryAt{} // the walk moves on: written later, it is reached by its path
	} else {
		if it.at.dir != nil {
			it.at.dir.acquire() // until a worker has fetched it
		}
		if ra.filling == nil {
			ra.filling = &batch{done: make(chan struct{})}
		}
		b := ra.filling
		p.batch = b
		p.cost = it.info.Size()
		if it.listed {
			p.cost = listedCost
		}
		b.files = append(b.files, p)
		b.bytes += p.cost
		ra.queued.Add(p.cost)
		if len(b.files) >= batchFiles || b.bytes >= batchBytes {
			ra.dispatch()
		}
	}
	ra.queue = append(ra.queue, p)
	for len(ra.queue) >= readAheadSlots || ra.queued.Load() > readAheadMaxBytes {
		if err := a.writeNext(ctx); err != nil {
			return err
		}
	}
	return nil
}

// flush writes every queued entry.
func (a *archiver) flush(ctx context.Context) error {
	for len(a.ra.queue) > 0 {
		if err := a.writeNext(ctx); err != nil {
			return err
		}
	}
	if drainedHook != nil {
		drainedHook(a.ra.queued.Load() + a.ra.large.Load())
	}
	return nil
}

func (a *archiver) writeNext(ctx context.Context) error {
	ra := a.ra
	p := ra.queue[0]
	ra.queue[0] = nil
	ra.queue = ra.queue[1:]
	if p.batch == nil {
		return a.add(ctx, p.it)
	}
	if p.batch == ra.filling {
		ra.dispatch()
	}
	<-p.batch.done
	ra.queued.Add(-p.cost) // after done: a worker no longer changes it
	defer p.release()
	switch {
	case p.openErr != nil:
		return a.openFailed(p.it, p.openErr)
	case p.f != nil:
		return a.writeFile(ctx, p.it, p.f, p.fi)
	}
	return a.writeBuffered(p)
}

// writeBuffered writes a file a worker has read whole (or as far as it could).
func (a *archiver) writeBuffered(p *pending) error {
	before := statID(p.fi)
	if err := a.fileHeader(p.it, before, p.fi); err != nil {
		return err
	}
	if _, err := a.tw.Write((*p.buf)[:p.n]); err != nil {
		return fmt.Errorf("archive %s: %w", p.it.arch, err)
	}
	a.done.Bytes += uint64(p.n)
	return a.finishFile(p.it, before, p.fi.Size(), int64(p.n), p.hash, p.obs, p.readErr)
}

// stop ends the workers after the queue was flushed or abandoned; abandoned entries release
// their files and buffers.
func (ra *readAhead) stop() {
	ra.filling = nil // never handed out: nothing of it was opened
	close(ra.work)
	ra.wg.Wait()
	for _, p := range ra.queue {
		p.release()
	}
	ra.queue = nil
}

// fetch opens, reads, hashes and observes one file: what addFile does before it writes.
func (p *pending) fetch(ctx context.Context, h *blake3.Hasher, ra *readAhead) {
	defer p.dropDir() // a file left to the archiver is checked through its path
	if err := ctx.Err(); err != nil {
		p.openErr = context.Cause(ctx)
		return
	}
	f, fi, err := openRegular(p.it)
	if err != nil {
		p.openErr = err
		return
	}
	p.fi = fi
	size := fi.Size()
	if size > readAheadMaxFile || (p.it.listed && ra.keepLinks && statID(fi).Nlink > 1) {
		p.f = f // too big (or grown since the walk), or a hard link: the archiver writes it
		return
	}
	pool := &smallBufs
	if size > smallBufSize {
		if ra.large.Add(readAheadMaxFile) > readAheadLargeBudget {
			ra.large.Add(-readAheadMaxFile)
			p.f = f // no large buffer left: the archiver streams it
			return
		}
		pool, p.budget = &largeBufs, &ra.large
	}
	defer f.Close()
	p.buf = pool.Get().(*[]byte)
	n, err := io.ReadFull(f, (*p.buf)[:size])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		p.readErr = err
	}
	p.n = n
	h.Reset()
	h.Write((*p.buf)[:n])
	if int64(n) < size {
		hashZeros(h, (*p.buf)[n:size], size-int64(n))
	}
	var sum [32]byte
	p.hash = hex.EncodeToString(h.Sum(sum[:0]))
	if afterCopyHook != nil {
		afterCopyHook(p.it.fsPath)
	}
	p.obs = observe(p.it, f, statID(fi), size, p.readErr)
}

// dropDir releases the entry's reference to its directory.
func (p *pending) dropDir() {
	if p.it.at.dir != nil {
		p.it.at.dir.release()
		p.it.at = entryAt{}
	}
}

// release closes and returns what fetch took, and the directory reference of an entry never
// fetched; the caller knows fetch has finished or will never run.
func (p *pending) release() {
	p.dropDir()
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
	if p.buf != nil {
		if cap(*p.buf) == smallBufSize {
			smallBufs.Put(p.buf)
		} else {
			largeBufs.Put(p.buf)
		}
		p.buf = nil
	}
	if p.budget != nil {
		p.budget.Add(-readAheadMaxFile)
		p.budget = nil
	}
}
