package webui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// BenchmarkLargeFileMemory downloads a 256 MiB asset over loopback and reports the peak growth of
// live heap while it streams: impl=readall is the naive handler that loads the file to send it,
// impl=stream is this package. Expect stream's peak_heap_MiB to stay near zero whatever the size.
func BenchmarkLargeFileMemory(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	must(b, os.MkdirAll(filepath.Join(dir, "assets"), 0o755))
	must(b, os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html>"), 0o644))
	big := filepath.Join(dir, "assets", "big-0123abcd.bin")
	f, err := os.Create(big)
	must(b, err)
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	for range size / len(chunk) {
		_, err := f.Write(chunk)
		must(b, err)
	}
	must(b, f.Close())

	for _, impl := range []string{"readall", "stream"} {
		b.Run("impl="+impl, func(b *testing.B) {
			var h http.Handler
			if impl == "stream" {
				fsys, err := Dir(dir)
				must(b, err)
				h = New(fsys, zerolog.Nop())
			} else {
				h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					data, err := os.ReadFile(big)
					if err != nil {
						http.Error(w, err.Error(), 500)
						return
					}
					w.Write(data)
				})
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			var peak float64
			b.SetBytes(size)
			for b.Loop() {
				runtime.GC()
				base := liveHeap()
				var max atomic.Uint64
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if v := liveHeap(); v > max.Load() {
							max.Store(v)
						}
						select {
						case <-stop:
							return
						case <-time.After(2 * time.Millisecond):
						}
					}
				}()
				resp, err := http.Get(srv.URL + "/assets/big-0123abcd.bin")
				must(b, err)
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				must(b, err)
				close(stop)
				wg.Wait()
				if n != size {
					b.Fatalf("got %d bytes", n)
				}
				if grow := float64(max.Load()) - float64(base); grow > peak {
					peak = grow
				}
			}
			b.ReportMetric(peak/(1<<20), "peak_heap_MiB")
		})
	}
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
