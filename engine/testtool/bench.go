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

// BenchSmallFilesEnv sets how many files the small-files backup benchmark writes
// (scripts/bench.d sets 100000).
const BenchSmallFilesEnv = "BASTION_BENCH_SMALL_FILES"

// BenchSmallFiles is the file count BenchSmallFilesEnv asks for, or def.
func BenchSmallFiles(def int) int {
	if v, err := strconv.Atoi(os.Getenv(BenchSmallFilesEnv)); err == nil && v > 0 {
		return v
	}
	return def
}

// SmallFilesTree writes n files of 100 bytes to 4 KiB under dir, 100 to a directory, alternately
// incompressible and log-like text: a home directory or a source tree more than a media
// library. It returns their total size.
func SmallFilesTree(tb testing.TB, dir string, n int) int64 {
	tb.Helper()
	var total int64
	rnd := make([]byte, 4096)
	text := []byte("2025-01-01T00:00:00Z INFO request handled path=/api/jobs status=200 duration_ms=12\n")
	var body []byte
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("d%05d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				tb.Fatal(err)
			}
		}
		size := 100 + (i*2657)%3997
		if i%2 == 0 {
			rand.Read(rnd[:size])
			body = rnd[:size]
		} else {
			body = body[:0]
			for len(body) < size {
				body = append(body, text...)
			}
			body = body[:size]
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d.txt", i%100)), body, 0o644); err != nil {
			tb.Fatal(err)
		}
		total += int64(size)
	}
	return total
}
