package restore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// BenchmarkRestoreLocal restores one snapshot of a local_dir target four ways, in one run:
//
//	impl=staged-1dec   the previous restore: every part copied to staging (hashed on the way),
//	                   then decoded by a synchronous zstd decoder
//	impl=staged-Ndec   staging copy, pipelined zstd decoder
//	impl=inplace-1dec  parts verified where they lie and decoded from there (what Restore does)
//	impl=inplace-Ndec  in place, pipelined zstd decoder
//
// BASTION_BENCH_TREE_MIB sizes the tree (default 64; scripts/bench uses 1024).
func BenchmarkRestoreLocal(b *testing.B) {
	tree := filepath.Join(b.TempDir(), "tree")
	size := testtool.MixedTree(b, tree, testtool.BenchTreeMiB(64), false)
	keys := &testtool.AgeKeys{}
	for _, enc := range []string{"none", "age"} {
		tg, runID := benchRestoreSnapshot(b, tree, enc, keys)
		for _, impl := range []struct {
			name     string
			staged   bool
			decoders int
		}{{"staged-1dec", true, 1}, {"staged-Ndec", true, 4}, {"inplace-1dec", false, 1}, {"inplace-Ndec", false, 4}} {
			b.Run(fmt.Sprintf("enc=%s/impl=%s", enc, impl.name), func(b *testing.B) {
				var t targets.Target = tg
				if impl.staged {
					t = onlyTarget{tg}
				}
				b.SetBytes(size)
				b.ReportAllocs()
				cpu0 := cpuTime()
				for b.Loop() {
					dest := b.TempDir()
					_, err := Restore(context.Background(), Request{JobID: "bench-job", RunID: runID, Target: t,
						Destination: dest, StagingDir: filepath.Join(b.TempDir(), "staging"), Keys: keys,
						decoders: impl.decoders})
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					os.RemoveAll(dest) // keep the disk footprint of -count runs flat
					b.StartTimer()
				}
				// CPU time is steadier than wall time on a shared machine.
				b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
			})
		}
	}
}

// cpuTime is the user+system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchRestoreSnapshot(b *testing.B, tree, enc string, keys *testtool.AgeKeys) (*localdir.Target, string) {
	tg, err := localdir.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s, err := jobspec.ParseAndValidate([]byte(`{"v":1,"type":"filesystem","source":{"paths":["` + tree + `"],"pre_scan":false},
		"target":{"type":"local_dir","base_dir":"/bk","part_size_bytes":268435456}}`))
	if err != nil {
		b.Fatal(err)
	}
	if enc == "age" {
		s.Pipeline.Encryption = jobspec.Encryption{Type: jobspec.EncryptionAgeX25519, KeyName: "bench"}
	}
	runID := "bench-run-" + enc
	if _, err := backup.Run(context.Background(), backup.Request{JobID: "bench-job", RunID: runID, StartedAt: time.Now(),
		Spec: s, Target: tg, StagingDir: filepath.Join(b.TempDir(), "st"), Keys: keys, Logger: zerolog.Nop()}); err != nil {
		b.Fatal(err)
	}
	return tg, runID
}
