package testtool

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchTreeEnv sizes the trees of the backup and restore benchmarks, in MiB (scripts/bench.d
// sets 1024).
const BenchTreeEnv = "BASTION_BENCH_TREE_MIB"

// BenchTreeMiB is the tree size BenchTreeEnv asks for, or def when it is unset or not positive.
func BenchTreeMiB(def int) int {
	if v, err := strconv.Atoi(os.Getenv(BenchTreeEnv)); err == nil && v > 0 {
		return v
	}
	return def
}

// MixedTree writes files of 1..4 MiB under dir in 16 directories until they hold about mib MiB,
// alternately incompressible and log-like text, so zstd meets both. With small, a 10-byte file
// sits beside each (not counted). It returns the bytes of the large files.
func MixedTree(tb testing.TB, dir string, mib int, small bool) int64 {
	tb.Helper()
	var total int64
	rnd := make([]byte, 1<<20)
	text := []byte("2025-01-01T00:00:00Z INFO request handled path=/api/jobs status=200 duration_ms=12\n")
	for i := 0; total < int64(mib)<<20; i++ {
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%16), fmt.Sprintf("f%05d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			tb.Fatal(err)
		}
		for range 1 + i%4 {
			if i%2 == 0 {
				rand.Read(rnd)
				f.Write(rnd)
			} else {
				for k := 0; k < len(rnd); k += len(text) {
					f.Write(text)
				}
			}
		}
		if err := f.Close(); err != nil {
			tb.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			tb.Fatal(err)
		}
		total += fi.Size()
		if small {
			if err := os.WriteFile(p+".small", []byte("small file"), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return total
}
