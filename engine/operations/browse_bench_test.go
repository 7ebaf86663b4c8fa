package operations_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
)

// BenchmarkBrowse pages through a generated snapshot of BASTION_BENCH_BROWSE_FILES files
// (default 100,000; scripts/bench uses 1,000,000) in 1,000 folders, the way the restore picker
// does, two ways in one run:
//
//	impl=streaming  today's code before the browse index: every page streams and decodes the
//	                whole entries.jsonl.zst (restore.List on the cached copy)
//	impl=index      the entries cache's browse index (IndexCache.List)
//
// op=folder is the first page of a random folder, op=search a name search in one, op=page2 its
// second page, op=restart the first page from a new cache on the same directory (a Hub
// restart: the index is on disk), op=build the first page ever (download + index build).
// Besides ns/op, each reports p50-ms and p95-ms over its iterations and peak-rss-MiB, the
// process's peak resident memory above what it held when the sub-benchmark started; the build
// reports the index's size, index-B/file.
func BenchmarkBrowse(b *testing.B) {
	files := 100_000
	if v, err := strconv.Atoi(os.Getenv("BASTION_BENCH_BROWSE_FILES")); err == nil && v > 0 {
		files = v
	}
	const folders = 1000
	base := b.TempDir()
	tgt, err := localdir.New(base)
	if err != nil {
		b.Fatal(err)
	}
	run := targets.RunRef{JobID: "bench-job", RunID: uuid(1)}
	src := filepath.Join(base, run.JobID, run.RunID, targets.EntriesName)
	genSnapshot(b, src, files, folders)
	ctx := context.Background()
	cacheDir := filepath.Join(b.TempDir(), "entries")
	// Build the index once, outside the timings of the ops that find it built.
	if _, err := operations.NewIndexCache(cacheDir, 0).List(ctx, tgt, run, restore.ListOptions{}); err != nil {
		b.Fatal(err)
	}
	folder := func(r *rand.Rand) string { return fmt.Sprintf("home/user/data/d%04d", r.IntN(folders)) }
	ops := []struct {
		name string
		opts func(r *rand.Rand) restore.ListOptions
	}{
		{"folder", func(r *rand.Rand) restore.ListOptions { return restore.ListOptions{Prefix: folder(r)} }},
		{"search", func(r *rand.Rand) restore.ListOptions {
			return restore.ListOptions{Prefix: folder(r), Q: "X" + strconv.Itoa(r.IntN(10))}
		}},
		{"page2", func(r *rand.Rand) restore.ListOptions {
			return restore.ListOptions{Prefix: folder(r), Cursor: "200", FilesFirst: true}
		}},
		{"restart", func(r *rand.Rand) restore.ListOptions { return restore.ListOptions{Prefix: folder(r)} }},
		{"build", func(r *rand.Rand) restore.ListOptions { return restore.ListOptions{Prefix: folder(r)} }},
	}
	shared := operations.NewIndexCache(cacheDir, 0)
	for _, op := range ops {
		for _, impl := range []string{"streaming", "index"} {
			b.Run("op="+op.name+"/impl="+impl, func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 2))
				var took []time.Duration
				rss0 := resetPeakRSS()
				for b.Loop() {
					opts := op.opts(r)
					cache := shared
					switch {
					case impl == "index" && op.name == "restart":
						cache = operations.NewIndexCache(cacheDir, 0)
					case impl == "index" && op.name == "build":
						b.StopTimer()
						fresh := filepath.Join(base, "fresh")
						if err := os.RemoveAll(fresh); err != nil { // keep the disk footprint flat
							b.Fatal(err)
						}
						cache = operations.NewIndexCache(fresh, 0)
						b.StartTimer()
					}
					start := time.Now()
					var page restore.Page
					var err error
					if impl == "streaming" {
						page, err = restore.List(src, opts)
					} else {
						page, err = cache.List(ctx, tgt, run, opts)
					}
					took = append(took, time.Since(start))
					if err != nil || page.Total == 0 {
						b.Fatalf("%+v: %+v %v", opts, page.Total, err)
					}
				}
				if impl == "index" && op.name == "build" {
					fi, err := os.Stat(filepath.Join(base, "fresh", run.RunID, operations.IndexName))
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(fi.Size())/float64(files), "index-B/file")
				}
				b.ReportMetric(pct(took, 50), "p50-ms")
				b.ReportMetric(pct(took, 95), "p95-ms")
				if rss0 > 0 {
					b.ReportMetric(float64(peakRSS()-rss0)/(1<<20), "peak-rss-MiB")
				}
			})
		}
	}
}

func pct(d []time.Duration, p int) float64 {
	slices.Sort(d)
	i := min(len(d)-1, (len(d)*p+99)/100-1)
	return float64(d[max(i, 0)]) / float64(time.Millisecond)
}

// resetPeakRSS resets the kernel's peak-RSS mark of this process and returns the current RSS
// (0 where /proc cannot do it).
func resetPeakRSS() int64 {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return 0
	}
	return procStatus("VmRSS:")
}

func peakRSS() int64 { return procStatus("VmHWM:") }

func procStatus(key string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// genSnapshot writes the entries.jsonl.zst of files files spread over folders folders, in walk
// order and with every field a real backup writes.
func genSnapshot(b *testing.B, path string, files, folders int) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	put := func(e format.Entry) {
		buf.Reset()
		if err := e.AppendLine(&buf); err != nil {
			b.Fatal(err)
		}
		if _, err := zw.Write(buf.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
	mtime, mode, uid := int64(1_760_000_000), uint32(0o644), uint64(1000)
	dirMode := uint32(0o755)
	for _, d := range []string{"home", "home/user", "home/user/data"} {
		put(format.Entry{Path: d, Kind: format.KindDir, Mtime: &mtime, Mode: &dirMode, UID: &uid, GID: &uid})
	}
	r := rand.New(rand.NewPCG(3, 4))
	n := 0
	for d := range folders {
		dir := fmt.Sprintf("home/user/data/d%04d", d)
		put(format.Entry{Path: dir, Kind: format.KindDir, Mtime: &mtime, Mode: &dirMode, UID: &uid, GID: &uid})
		per := files / folders
		if d < files%folders {
			per++
		}
		for i := range per {
			e := format.FileEntry(fmt.Sprintf("%s/File-%07d-x%d.dat", dir, n, i%10), r.Int64N(1<<24), fmt.Sprintf("%016x%016x%016x%016x", r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()))
			e.Mtime, e.Mode, e.UID, e.GID = &mtime, &mode, &uid, &uid
			put(e)
			n++
		}
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
