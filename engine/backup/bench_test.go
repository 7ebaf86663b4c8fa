package backup_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// benchTree writes a tree of about mib MiB: half incompressible, half text, in 1..4 MiB files
// plus small files. BASTION_BENCH_TREE_MIB sets the size (scripts/bench.d/40-backup.sh: 1024).
func benchTree(b *testing.B) (string, int64) {
	mib := 32
	if v, err := strconv.Atoi(os.Getenv("BASTION_BENCH_TREE_MIB")); err == nil && v > 0 {
		mib = v
	}
	dir := filepath.Join(b.TempDir(), "tree")
	var total int64
	rnd := make([]byte, 1<<20)
	text := []byte("2025-01-01T00:00:00Z INFO request handled path=/api/jobs status=200 duration_ms=12\n")
	for i := 0; total < int64(mib)<<20; i++ {
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%16), fmt.Sprintf("f%05d", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		n := 1 + i%4
		for j := 0; j < n; j++ {
			if i%2 == 0 {
				rand.Read(rnd)
				f.Write(rnd)
			} else {
				for k := 0; k < len(rnd); k += len(text) {
					f.Write(text)
				}
			}
		}
		f.Close()
		fi, _ := os.Stat(p)
		total += fi.Size()
		os.WriteFile(p+".small", []byte("small file"), 0o644)
	}
	return dir, total
}

type benchKeys struct{ id *age.X25519Identity }

func (k benchKeys) Recipient(context.Context, string) (age.Recipient, error) {
	return k.id.Recipient(), nil
}
func (k benchKeys) Identity(context.Context, string) (age.Identity, error) { return k.id, nil }

func childMaxRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return ru.Maxrss // KiB on Linux
}

func selfMaxRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss
}

// BenchmarkBackupRestore compares Bastion's backup and restore with the same pipeline built
// from Debian's tar, zstd and age, on the same tree in the same run. Peak RSS is reported as
// peak-rss-MiB (the CLI figure is the largest process of the pipeline).
func BenchmarkBackupRestore(b *testing.B) {
	for _, tool := range []string{"tar", "zstd", "age", "age-keygen"} {
		testtool.Require(b, tool)
	}
	tree, size := benchTree(b)
	id, _ := age.GenerateX25519Identity()
	keyFile := filepath.Join(b.TempDir(), "key.txt")
	os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600)
	for _, enc := range []string{"none", "age"} {
		for _, impl := range []string{"cli", "bastion"} {
			b.Run(fmt.Sprintf("op=backup/enc=%s/impl=%s", enc, impl), func(b *testing.B) {
				b.SetBytes(size)
				for b.Loop() {
					if impl == "cli" {
						out := filepath.Join(b.TempDir(), "payload")
						pipe := fmt.Sprintf("tar -C %s -cf - . | zstd -3 -T0 -q", tree)
						if enc == "age" {
							pipe += " | age -r " + id.Recipient().String()
						}
						runSh(b, pipe+" > "+out)
						b.ReportMetric(float64(childMaxRSS())/1024, "peak-rss-MiB")
						continue
					}
					benchBastionBackup(b, tree, enc, id)
					b.ReportMetric(float64(selfMaxRSS())/1024, "peak-rss-MiB")
				}
			})
			b.Run(fmt.Sprintf("op=restore/enc=%s/impl=%s", enc, impl), func(b *testing.B) {
				b.SetBytes(size)
				if impl == "cli" {
					payload := filepath.Join(b.TempDir(), "payload")
					pipe := fmt.Sprintf("tar -C %s -cf - . | zstd -3 -T0 -q", tree)
					if enc == "age" {
						pipe += " | age -r " + id.Recipient().String()
					}
					runSh(b, pipe+" > "+payload)
					for b.Loop() {
						dest := b.TempDir()
						dec := "cat " + payload
						if enc == "age" {
							dec += " | age -d -i " + keyFile
						}
						runSh(b, dec+" | zstd -d -q | tar -C "+dest+" -xf -")
					}
					b.ReportMetric(float64(childMaxRSS())/1024, "peak-rss-MiB")
					return
				}
				tg, runID := benchBastionBackup(b, tree, enc, id)
				for b.Loop() {
					_, err := restore.Restore(context.Background(), restore.Request{JobID: jobID, RunID: runID, Target: tg,
						Destination: b.TempDir(), StagingDir: filepath.Join(b.TempDir(), "s"), Keys: benchKeys{id}})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(selfMaxRSS())/1024, "peak-rss-MiB")
			})
		}
	}
}

func runSh(b *testing.B, script string) {
	cmd := exec.Command("sh", "-c", "set -e; "+script)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
}

func benchBastionBackup(b *testing.B, tree, enc string, id *age.X25519Identity) (*localdir.Target, string) {
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
	id2 := runID()
	_, err = backupRun(tg, s, id2, b.TempDir(), benchKeys{id})
	if err != nil {
		b.Fatal(err)
	}
	return tg, id2
}

func backupRun(tg *localdir.Target, s *jobspec.Spec, run, staging string, keys benchKeys) (any, error) {
	return backupRunFn(context.Background(), tg, s, run, filepath.Join(staging, "st"), keys, time.Now())
}
