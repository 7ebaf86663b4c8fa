package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// TestPreScanCountsWhatTheWalkEmits: the pre-scan walks subtrees on several goroutines; its
// totals must still be exactly what one sequential walk with the same filters emits (the objects
// packaging then archives), under every symlink policy, with filters, a symlink loop, special
// files and entries in every level of the tree.
func TestPreScanCountsWhatTheWalkEmits(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for i := range 40 {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", i), fmt.Sprintf("sub%d", i%3), "leaf")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range i % 7 {
			body := make([]byte, i*100+j)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d.txt", j)), body, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(filepath.Dir(dir), fmt.Sprintf("g%d.log", j)), body[:j], 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	must(t, os.Symlink(filepath.Join(root, "d01"), filepath.Join(root, "d02", "to-d01")))
	must(t, os.Symlink(root, filepath.Join(root, "d03", "loop")))
	must(t, os.Symlink(filepath.Join(root, "nowhere"), filepath.Join(root, "d04", "dangling")))
	must(t, syscall.Mkfifo(filepath.Join(root, "d05", "fifo"), 0o600))

	for _, tc := range []struct {
		name string
		src  jobspec.FilesystemSource
	}{
		{"Keep", jobspec.FilesystemSource{SymlinkPolicy: jobspec.SymlinkKeep}},
		{"Follow", jobspec.FilesystemSource{SymlinkPolicy: jobspec.SymlinkFollow}},
		{"Skip", jobspec.FilesystemSource{SymlinkPolicy: jobspec.SymlinkSkip}},
		{"Filters", jobspec.FilesystemSource{SymlinkPolicy: jobspec.SymlinkKeep, Include: []string{"*.txt"}, Exclude: []string{"*/d1*"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := tc.src
			src.Paths, src.ErrorPolicy = []string{root}, jobspec.ErrorSkipOK
			w, err := newFilesystemWalker(&src, newFSIssues(jobspec.ErrorSkipOK))
			if err != nil {
				t.Fatal(err)
			}
			var want progress.Units
			if err := w.walk(context.Background(), func(it item) error {
				switch {
				case it.info.IsDir():
					want.Dirs++
				case it.info.Mode().IsRegular():
					want.Files++
					want.Bytes += uint64(it.info.Size())
				default:
					want.Files++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if want.Dirs < 80 || want.Files < 20 {
				t.Fatalf("the tree is too small to exercise the forked walk: %+v", want)
			}
			r := &run{ctx: context.Background()}
			for range 5 { // the split between goroutines differs from run to run
				got, err := r.preScan(&src)
				if err != nil {
					t.Fatal(err)
				}
				if *got != want {
					t.Fatalf("pre-scan %+v, walk emits %+v", *got, want)
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPreScan times the pre-scan of BASTION_BENCH_SMALL_FILES small files (default 2000)
// walked by one goroutine, as before it forked (impl=sequential), and by preScanWalkers
// (impl=parallel).
func BenchmarkPreScan(b *testing.B) {
	n := testtool.BenchSmallFiles(2000)
	tree := filepath.Join(b.TempDir(), "tree")
	testtool.SmallFilesTree(b, tree, n)
	src := jobspec.FilesystemSource{Paths: []string{tree}, SymlinkPolicy: jobspec.SymlinkKeep, ErrorPolicy: jobspec.ErrorSkipOK}
	for _, impl := range []struct {
		name    string
		walkers int
	}{{"sequential", 1}, {"parallel", preScanWalkers}} {
		walkers := impl.walkers
		b.Run(fmt.Sprintf("files=%d/impl=%s", n, impl.name), func(b *testing.B) {
			defer func(w int) { preScanWalkers = w }(preScanWalkers)
			preScanWalkers = walkers
			r := &run{ctx: context.Background()}
			for b.Loop() {
				if _, err := r.preScan(&src); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/file")
		})
	}
}
