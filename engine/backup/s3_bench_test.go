package backup_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/s3"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// BenchmarkBackupS3VsLocal backs up the same generated tree (BASTION_BENCH_TREE_MIB, default 32)
// in 8 MiB archive parts to a local directory and to a local versitygw (posix backend, same
// disk), in turns within each iteration so both see the same machine state. Figures: each
// target's MB/s and s3/local, the S3 backup's time over the local one's (1.0 = no overhead).
func BenchmarkBackupS3VsLocal(b *testing.B) {
	tree, size := benchTree(b)
	srv := testtool.StartVersityGW(b)
	ctx := context.Background()
	local, err := localdir.New(filepath.Join(b.TempDir(), "bk"))
	if err != nil {
		b.Fatal(err)
	}
	remote, err := s3.Open(ctx, s3.Config{Endpoint: srv.Endpoint, Region: srv.Region, Bucket: srv.Bucket, Prefix: "bench",
		SecretName: "bench", PathStyle: true}, s3.Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, s3.Options{})
	if err != nil {
		b.Fatal(err)
	}
	spec, err := jobspec.ParseAndValidate([]byte(`{"v":1,"type":"filesystem","source":{"paths":["` + tree + `"]},
		"target":{"type":"local_dir","base_dir":"/bk","part_size_bytes":8388608}}`))
	if err != nil {
		b.Fatal(err)
	}
	once := func(tg targets.Target) time.Duration {
		run := uuid.NewString()
		start := time.Now()
		if _, err := backup.Run(ctx, backup.Request{JobID: jobID, RunID: run, StartedAt: start, Spec: spec, Target: tg,
			StagingDir: filepath.Join(b.TempDir(), "staging"), Keys: &testtool.AgeKeys{}, Logger: zerolog.Nop()}); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		b.StopTimer()
		// Each run is removed so the disk holds one copy at a time.
		if _, err := tg.DeleteRun(ctx, targets.RunRef{JobID: jobID, RunID: run}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		return took
	}
	var localT, s3T time.Duration
	b.SetBytes(2 * size)
	for b.Loop() {
		localT += once(local)
		s3T += once(remote)
	}
	mb := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mb(localT), "local-MB/s")
	b.ReportMetric(mb(s3T), "s3-MB/s")
	b.ReportMetric(s3T.Seconds()/localT.Seconds(), "s3/local")
}
