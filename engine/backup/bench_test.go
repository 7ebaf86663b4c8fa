package backup_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// benchTree writes a tree of about BASTION_BENCH_TREE_MIB MiB (default 32; scripts/bench.d/40-backup.sh:
// 1024): half incompressible, half text, in 1..4 MiB files plus small files.
func benchTree(b *testing.B) (string, int64) {
	dir := filepath.Join(b.TempDir(), "tree")
	return dir, testtool.MixedTree(b, dir, testtool.BenchTreeMiB(32), true)
}

// Peak RSS in BenchmarkBackupRestore is measured per run: each run (ours: this test binary
// run again with benchChildEnv set; and each program of the CLI pipeline) is its own process,
// started under GNU time, whose %M is that program's own peak. Neither simpler reading works:
// RUSAGE_SELF/RUSAGE_CHILDREN are high-water marks over the life of the benchmark process, so
// every sub-benchmark inherited the peak of the ones before it; and a child's own wait4 Maxrss
// is no better, because Go starts children with vfork and Linux records the parent's RSS
// high-water mark into the child's at exec. GNU time fork()s, so the program starts from time's
// own megabyte or two.
const (
	benchChildEnv = "BASTION_BENCH_CHILD" // backup | restore
	benchTreeEnv  = "BASTION_BENCH_CHILD_TREE"
	benchEncEnv   = "BASTION_BENCH_CHILD_ENC"
	benchKeyEnv   = "BASTION_BENCH_CHILD_KEYFILE"
	benchBaseEnv  = "BASTION_BENCH_CHILD_TARGET"
	benchRunEnv   = "BASTION_BENCH_CHILD_RUN"
	benchTmpEnv   = "BASTION_BENCH_CHILD_TMP"
	// benchPreScanEnv=true runs the backup with pre_scan on, as a job has it by default.
	benchPreScanEnv = "BASTION_BENCH_CHILD_PRESCAN"
)

func TestMain(m *testing.M) {
	if op := os.Getenv(benchChildEnv); op != "" {
		// BASTION_BENCH_CPUPROFILE=file profiles the child (the last one run writes it).
		if p := os.Getenv("BASTION_BENCH_CPUPROFILE"); p != "" {
			if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
		if err := benchChild(op); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// benchChild is one Bastion backup or restore, as the child process of the benchmark.
func benchChild(op string) error {
	if op == "touch" {
		mib, err := strconv.Atoi(os.Getenv(benchTouchEnv))
		if err != nil {
			return err
		}
		buf := make([]byte, mib<<20)
		for i := 0; i < len(buf); i += 4096 { // one write per page makes it resident
			buf[i] = 1
		}
		_, err = fmt.Fprint(io.Discard, buf[len(buf)-1])
		return err
	}
	key, err := os.ReadFile(os.Getenv(benchKeyEnv))
	if err != nil {
		return err
	}
	id, err := age.ParseX25519Identity(strings.TrimSpace(string(key)))
	if err != nil {
		return err
	}
	keys := &testtool.AgeKeys{}
	keys.Set("bench", id)
	tg, err := localdir.New(os.Getenv(benchBaseEnv))
	if err != nil {
		return err
	}
	run, tmp := os.Getenv(benchRunEnv), os.Getenv(benchTmpEnv)
	switch op {
	case "backup":
		s, err := jobspec.ParseAndValidate([]byte(`{"v":1,"type":"filesystem","source":{"paths":["` + os.Getenv(benchTreeEnv) + `"],"pre_scan":` + strconv.FormatBool(os.Getenv(benchPreScanEnv) == "true") + `},
		"target":{"type":"local_dir","base_dir":"/bk","part_size_bytes":268435456}}`))
		if err != nil {
			return err
		}
		if os.Getenv(benchEncEnv) == "age" {
			s.Pipeline.Encryption = jobspec.Encryption{Type: jobspec.EncryptionAgeX25519, KeyName: "bench"}
		}
		req := backup.Request{JobID: jobID, RunID: run, StartedAt: time.Now(), Spec: s, Target: tg,
			StagingDir: filepath.Join(tmp, "staging"), Keys: keys, Logger: zerolog.Nop()}
		if os.Getenv("BASTION_BENCH_CHILD_SEQUENTIAL") == "true" {
			req = backup.SequentialReads(req) // to compare with read-ahead by hand
		}
		_, err = backup.Run(context.Background(), req)
		return err
	case "restore":
		_, err := restore.Restore(context.Background(), restore.Request{JobID: jobID, RunID: run, Target: tg,
			Destination: filepath.Join(tmp, "dest"), StagingDir: filepath.Join(tmp, "staging"), Keys: keys})
		return err
	}
	return fmt.Errorf("unknown bench child op %q", op)
}

// benchBastion runs one Bastion backup or restore in a child process and returns its peak RSS
// in KiB.
func benchBastion(b *testing.B, op, tree, enc, keyFile, base, run string, env ...string) int64 {
	return benchChildRun(b, op, append([]string{benchTreeEnv + "=" + tree, benchEncEnv + "=" + enc,
		benchKeyEnv + "=" + keyFile, benchBaseEnv + "=" + base, benchRunEnv + "=" + run, benchTmpEnv + "=" + b.TempDir()}, env...)...)
}

// benchChildRun runs this binary as a benchmark child doing op and returns its peak RSS in KiB.
func benchChildRun(tb testing.TB, op string, env ...string) int64 {
	m := measure(tb, os.Args[0])
	m.cmd.Env = append(append(os.Environ(), benchChildEnv+"="+op), env...)
	out, err := m.cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("bench child %s: %v\n%s", op, err, out)
	}
	return m.peak(tb)
}

// measured is a command run under GNU time, which writes the program's peak RSS to out.
type measured struct {
	cmd *exec.Cmd
	out string
}

func measure(tb testing.TB, argv ...string) *measured {
	out := filepath.Join(tb.TempDir(), "maxrss")
	args := append([]string{"-q", "-f", "%M", "-o", out}, argv...)
	return &measured{cmd: exec.Command(testtool.Require(tb, "time"), args...), out: out}
}

// peak is the peak RSS in KiB of the program, once it has exited.
func (m *measured) peak(tb testing.TB) int64 {
	b, err := os.ReadFile(m.out)
	if err != nil {
		tb.Fatal(err)
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		tb.Fatalf("peak RSS from time: %q: %v", b, err)
	}
	return kib
}

// benchPipeline runs argvs as a pipeline (stdin of the first from in, stdout of the last to
// out, kernel pipes between them) and returns the sum of the programs' peak RSS in KiB: what
// the pipeline holds at most, since its programs run at the same time.
func benchPipeline(b *testing.B, in, out string, argvs ...[]string) int64 {
	ms := make([]*measured, len(argvs))
	stderr := make([]bytes.Buffer, len(argvs))
	var toClose []*os.File
	defer func() {
		for _, f := range toClose {
			f.Close()
		}
	}()
	for i, argv := range argvs {
		ms[i] = measure(b, argv...)
		ms[i].cmd.Stderr = &stderr[i]
	}
	if in != "" {
		f, err := os.Open(in)
		if err != nil {
			b.Fatal(err)
		}
		toClose = append(toClose, f)
		ms[0].cmd.Stdin = f
	}
	f, err := os.Create(out)
	if err != nil {
		b.Fatal(err)
	}
	toClose = append(toClose, f)
	ms[len(ms)-1].cmd.Stdout = f
	for i := 0; i < len(ms)-1; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		toClose = append(toClose, r, w)
		ms[i].cmd.Stdout, ms[i+1].cmd.Stdin = w, r
	}
	for i, m := range ms {
		if err := m.cmd.Start(); err != nil {
			b.Fatalf("start %v: %v", argvs[i], err)
		}
	}
	// Only the children may hold the pipe ends now, so each sees EOF when its writer exits.
	for _, f := range toClose {
		f.Close()
	}
	toClose = nil
	var sum int64
	for i, m := range ms {
		if err := m.cmd.Wait(); err != nil {
			b.Fatalf("%v: %v\n%s", argvs[i], err, stderr[i].String())
		}
		sum += m.peak(b)
	}
	return sum
}

// benchTouchEnv sizes the "touch" child op: it writes to that many MiB and exits.
const benchTouchEnv = "BASTION_BENCH_CHILD_TOUCH_MIB"

// The benchmark's peak RSS figures are each run's own: not the high-water mark of earlier runs
// in the same process (RUSAGE_SELF/RUSAGE_CHILDREN), nor the RSS of the process that started
// them (what a vfork'ed child's wait4 Maxrss starts from).
func TestBenchPeakRSSIsPerRun(t *testing.T) {
	t.Parallel()
	big := benchChildRun(t, "touch", benchTouchEnv+"=192")
	// This process now holds 192 MiB too.
	held := make([]byte, 192<<20)
	for i := 0; i < len(held); i += 4096 {
		held[i] = 1
	}
	small := benchChildRun(t, "touch", benchTouchEnv+"=1")
	runtime.KeepAlive(held)
	if big < 192<<10 || small >= 96<<10 {
		t.Fatalf("peaks %d KiB then %d KiB; want >= 192 MiB then < 96 MiB", big, small)
	}
}

// BenchmarkBackupRestore compares Bastion's backup and restore with the same pipeline built
// from Debian's tar, zstd and age, on the same tree in the same run. Each run is a fresh
// process (ours: this test binary again), so peak-rss-MiB is that run's own peak: ours is the
// peak of our one process, the CLI's is the sum of its programs' peaks.
func BenchmarkBackupRestore(b *testing.B) {
	for _, tool := range []string{"tar", "zstd", "age", "time"} {
		testtool.Require(b, tool)
	}
	tree, size := benchTree(b)
	id, _ := age.GenerateX25519Identity()
	keyFile := filepath.Join(b.TempDir(), "key.txt")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	backupCLI := func(enc, out string) int64 {
		argvs := [][]string{{"tar", "-C", tree, "-cf", "-", "."}, {"zstd", "-3", "-T0", "-q"}}
		if enc == "age" {
			argvs = append(argvs, []string{"age", "-r", id.Recipient().String()})
		}
		return benchPipeline(b, "", out, argvs...)
	}
	for _, enc := range []string{"none", "age"} {
		for _, impl := range []string{"cli", "bastion"} {
			b.Run(fmt.Sprintf("op=backup/enc=%s/impl=%s", enc, impl), func(b *testing.B) {
				b.SetBytes(size)
				var peak int64
				for b.Loop() {
					if impl == "cli" {
						peak = max(peak, backupCLI(enc, filepath.Join(b.TempDir(), "payload")))
					} else {
						peak = max(peak, benchBastion(b, "backup", tree, enc, keyFile, b.TempDir(), uuid.NewString()))
					}
				}
				b.ReportMetric(float64(peak)/1024, "peak-rss-MiB")
			})
			b.Run(fmt.Sprintf("op=restore/enc=%s/impl=%s", enc, impl), func(b *testing.B) {
				b.SetBytes(size)
				var peak int64
				if impl == "cli" {
					payload := filepath.Join(b.TempDir(), "payload")
					backupCLI(enc, payload)
					for b.Loop() {
						argvs := [][]string{{"zstd", "-d", "-q"}, {"tar", "-C", b.TempDir(), "-xf", "-"}}
						if enc == "age" {
							argvs = append([][]string{{"age", "-d", "-i", keyFile}}, argvs...)
						}
						peak = max(peak, benchPipeline(b, payload, os.DevNull, argvs...))
					}
				} else {
					base, run := b.TempDir(), uuid.NewString()
					benchBastion(b, "backup", tree, enc, keyFile, base, run)
					for b.Loop() {
						peak = max(peak, benchBastion(b, "restore", tree, enc, keyFile, base, run))
					}
				}
				b.ReportMetric(float64(peak)/1024, "peak-rss-MiB")
			})
		}
	}
}

// BenchmarkSmallFiles compares a backup of many small files with tar | zstd -3 -T0 on the same
// tree in the same run, each run its own process (BASTION_BENCH_SMALL_FILES files, default 2000;
// scripts/bench.d/40-backup.sh asks for 100000). Per-file costs dominate here, not bytes. Our
// backup runs as a job does by default, with pre_scan on: the extra walk is part of what a user
// waits for.
func BenchmarkSmallFiles(b *testing.B) {
	for _, tool := range []string{"tar", "zstd", "time"} {
		testtool.Require(b, tool)
	}
	n := testtool.BenchSmallFiles(2000)
	tree := filepath.Join(b.TempDir(), "tree")
	size := testtool.SmallFilesTree(b, tree, n)
	id, _ := age.GenerateX25519Identity()
	keyFile := filepath.Join(b.TempDir(), "key.txt")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, impl := range []string{"cli", "bastion"} {
		b.Run(fmt.Sprintf("files=%d/impl=%s", n, impl), func(b *testing.B) {
			b.SetBytes(size)
			var peak int64
			for b.Loop() {
				if impl == "cli" {
					peak = max(peak, benchPipeline(b, "", filepath.Join(b.TempDir(), "payload"),
						[]string{"tar", "-C", tree, "-cf", "-", "."}, []string{"zstd", "-3", "-T0", "-q"}))
				} else {
					peak = max(peak, benchBastion(b, "backup", tree, "none", keyFile, b.TempDir(), uuid.NewString(),
						benchPreScanEnv+"=true"))
				}
			}
			b.ReportMetric(float64(peak)/1024, "peak-rss-MiB")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "us/file")
		})
	}
}
