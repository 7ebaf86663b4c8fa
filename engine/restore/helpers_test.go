package restore_test

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
	"github.com/bastion-backup/bastion/engine/testtool"
)

const (
	jobID = "5b0f0c3e-6f7c-4a53-9d6f-0a8f2c1d9e01"
)

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewConsoleWriter(zerolog.ConsoleTestWriter(t))).Level(zerolog.WarnLevel)
}

func newLocalTarget(t *testing.T) *localdir.Target {
	t.Helper()
	tg, err := localdir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func fsSpec(t *testing.T, patch func(*jobspec.Spec), paths ...string) *jobspec.Spec {
	t.Helper()
	s, err := jobspec.Parse([]byte(`{"v":1,"type":"filesystem","source":{"paths":["/x"]},"target":{"type":"local_dir","base_dir":"/bk","part_size_bytes":1048576}}`))
	if err != nil {
		t.Fatal(err)
	}
	s.Filesystem.Paths = paths
	if patch != nil {
		patch(s)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

type backupResult struct {
	runID   string
	summary backup.Summary
	events  *testtool.Events
}

func runBackup(t *testing.T, tg targets.Target, spec *jobspec.Spec, keys *testtool.AgeKeys) backupResult {
	t.Helper()
	res, err := tryBackup(t, tg, spec, keys)
	if err != nil {
		t.Fatalf("backup: %v (events %v)", err, res.events.Kinds())
	}
	return res
}

func tryBackup(t *testing.T, tg targets.Target, spec *jobspec.Spec, keys *testtool.AgeKeys) (backupResult, error) {
	t.Helper()
	ev := &testtool.Events{}
	runID := uuid.NewString()
	var kp backup.KeyProvider
	if keys != nil {
		kp = keys
	}
	sum, err := backup.Run(context.Background(), backup.Request{
		JobID: jobID, RunID: runID, StartedAt: time.Now(), Spec: spec, Target: tg,
		StagingDir: filepath.Join(t.TempDir(), "staging"), Keys: kp, Events: ev, Logger: testLogger(t),
	})
	return backupResult{runID: runID, summary: sum, events: ev}, err
}

// tree builders

var timeZero = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
