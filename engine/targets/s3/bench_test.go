package s3_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/s3"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// partFile writes size bytes of test content to a file, as the rolling uploader's part files.
func partFile(b *testing.B, size int64) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "part")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, targettest.NewContent(1, size)); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

// putLoop uploads the file as one part per iteration, deleting the run after each so the next
// upload is not skipped by size.
func putLoop(b *testing.B, tg targets.Target, src string, size int64) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	ctx := context.Background()
	run := targettest.NewRun(b)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tg.Put(ctx, run, "payload.part000001", in, size); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := tg.DeleteRun(ctx, run); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkPutPart uploads one 64 MiB part file: impl=local_dir writes it into a directory
// (with fsync), impl=s3 sends it to versitygw on the same machine and disk (one PUT at the
// default 64 MiB part size; impl=s3_multipart in 16 MiB parts). Read the ratio with
// benchstat -col /impl.
func BenchmarkPutPart(b *testing.B) {
	const size = 64 << 20
	src := partFile(b, size)
	srv := testtool.StartVersityGW(b)
	b.Run("impl=local_dir", func(b *testing.B) {
		tg, err := localdir.New(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		putLoop(b, tg, src, size)
	})
	for _, tc := range []struct {
		name     string
		partSize int64
	}{{"s3", 0}, {"s3_multipart", 16 << 20}} {
		b.Run("impl="+tc.name, func(b *testing.B) {
			cfg := config(srv, srv.Endpoint, "bench")
			cfg.PartSizeBytes = tc.partSize
			tg, _ := newTarget(b, cfg, creds(srv), s3.Options{})
			putLoop(b, tg, src, size)
		})
	}
}

// BenchmarkPutMemory uploads a 256 MiB part to versitygw and reports, besides B/op, the peak
// of live heap during the upload (peak-heap-B, sampled every millisecond) above what it was
// before: the upload reads straight from the file, so it must stay far below one part.
func BenchmarkPutMemory(b *testing.B) {
	const size = 256 << 20
	src := partFile(b, size)
	srv := testtool.StartVersityGW(b)
	for _, tc := range []struct {
		name     string
		partSize int64
	}{{"part=64MiB", 0}, {"part=256MiB", 256 << 20}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := config(srv, srv.Endpoint, "bench-mem")
			cfg.PartSizeBytes = tc.partSize
			tg, _ := newTarget(b, cfg, creds(srv), s3.Options{})
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			peak := sampleHeap()
			putLoop(b, tg, src, size)
			b.ReportMetric(float64(max(int64(peak())-int64(base.HeapAlloc), 0)), "peak-heap-B")
		})
	}
}

// sampleHeap polls HeapAlloc until the returned function is called, which returns the peak.
func sampleHeap() func() uint64 {
	var (
		mu   sync.Mutex
		peak uint64
	)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapAlloc)
			mu.Unlock()
		}
	}()
	return func() uint64 {
		close(done)
		<-stopped
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
