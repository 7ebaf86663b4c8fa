package backupexec

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// recorder stands in for the run queue's event log and progress store.
type recorder struct {
	mu       sync.Mutex
	events   []runs.Event
	progress [][]byte
}

func (r *recorder) Append(_ context.Context, evs ...runs.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, evs...)
	return nil
}

func (r *recorder) SetProgress(_ context.Context, b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = append(r.progress, b)
	return nil
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Kind)
	}
	return out
}

type bundle struct {
	exec    *Executor
	dataDir string
	baseDir string
	src     string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{dataDir: t.TempDir(), baseDir: filepath.Join(t.TempDir(), "bk"), src: filepath.Join(t.TempDir(), "src")}
	testtool.BuildTree(t, b.src, 3<<20)
	b.exec = New(Config{DataDir: b.dataDir, Opener: opener.New(opener.Config{Logger: zerolog.Nop()}),
		Clock: clock.Real{}, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	return b
}

func (b *bundle) request(t *testing.T, patch func(*jobspec.Spec)) (runs.ExecRequest, *recorder) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{b.src}},
		"target": map[string]any{"type": "local_dir", "base_dir": b.baseDir, "part_size_bytes": 1 << 20}})
	spec, err := jobspec.ParseAndValidate(raw)
	if err != nil {
		t.Fatal(err)
	}
	if patch != nil {
		patch(spec)
	}
	rec := &recorder{}
	return runs.ExecRequest{
		Run:  storage.Run{ID: "6f1c2a1e-0000-4000-8000-000000000001", JobID: "0b5d8e4e-0000-4000-8000-000000000002", StartedAt: time.Now().Unix()},
		Job:  storage.Job{ID: "0b5d8e4e-0000-4000-8000-000000000002"},
		Spec: spec, Events: rec, Progress: rec,
	}, rec
}

func TestExecuteSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req, rec := b.request(t, nil)
	out, err := b.exec.Execute(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != storage.RunSuccess || out.Error != nil {
		t.Fatalf("outcome = %+v", out)
	}
	var sum backup.Summary
	if err := json.Unmarshal(out.Summary, &sum); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(b.baseDir, req.Job.ID, req.Run.ID)
	if sum.Target.RunDir != runDir || sum.Parts < 3 || sum.EntriesCount == 0 {
		t.Fatalf("summary = %+v", sum)
	}
	a := out.Artifact
	var rt targets.RunTarget
	if err := json.Unmarshal(a.TargetSnapshot, &rt); err != nil {
		t.Fatal(err)
	}
	if a.NodeID != "hub" || a.TargetType != "local_dir" || a.Format != "archive_v1" ||
		rt.NodeID != "hub" || string(rt.Target.JSON()) != string(localdir.Redact(b.baseDir).JSON()) {
		t.Fatalf("artifact = %+v, target %+v", a, rt)
	}
	if a.SourceFiles == nil || *a.SourceFiles < 120 || a.SourceBytes == nil || *a.SourceBytes < 3<<20 ||
		a.TransferBytes == nil || *a.TransferBytes != sum.Metrics.TransferTotalBytes {
		t.Fatalf("artifact metrics = files %v bytes %v transfer %v", a.SourceFiles, a.SourceBytes, a.TransferBytes)
	}
	if _, err := os.Stat(filepath.Join(runDir, targets.CompleteName)); err != nil {
		t.Fatalf("complete.json: %v", err)
	}
	// The staging and run directories are gone.
	if _, err := os.Stat(RunDir(b.dataDir, req.Run.ID)); !os.IsNotExist(err) {
		t.Fatalf("run directory left behind: %v", err)
	}
	kinds := rec.kinds()
	for _, want := range []string{"packaging", "planning", "scan", "upload"} {
		if !contains(kinds, want) {
			t.Errorf("events %v lack %q", kinds, want)
		}
	}
	// The last progress value is the finished upload stage.
	var last struct {
		Kind  string `json:"kind"`
		Stage string `json:"stage"`
		Done  struct{ Bytes int64 }
	}
	if len(rec.progress) == 0 {
		t.Fatal("no progress stored")
	}
	if err := json.Unmarshal(rec.progress[len(rec.progress)-1], &last); err != nil {
		t.Fatal(err)
	}
	if last.Kind != "backup" || last.Stage != "upload" || last.Done.Bytes != sum.Metrics.TransferTotalBytes {
		t.Fatalf("last progress = %+v (transfer total %d)", last, sum.Metrics.TransferTotalBytes)
	}

	// The snapshot restores to the same tree.
	tg, _ := localdir.New(b.baseDir)
	dest := t.TempDir()
	if _, err := restore.Restore(context.Background(), restore.Request{JobID: req.Job.ID, RunID: req.Run.ID, Target: tg,
		Destination: dest, StagingDir: filepath.Join(t.TempDir(), "st")}); err != nil {
		t.Fatal(err)
	}
	testtool.CompareTrees(t, b.src, testtool.ArchivePath(dest, b.src), false)
}

func TestExecuteFailures(t *testing.T) {
	t.Parallel()

	t.Run("TargetNotWritable", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// The base directory is a file: every write fails with a local I/O error.
		if err := os.WriteFile(b.baseDir, []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
		req, _ := b.request(t, nil)
		out, err := b.exec.Execute(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != storage.RunFailed || out.Error == nil || out.Artifact != nil {
			t.Fatalf("outcome = %+v", out)
		}
		if out.Error.Code == "" || out.Error.Kind == "" || out.Error.Message == "" || out.Error.Protocol != "local" {
			t.Fatalf("error = %+v", out.Error)
		}
		if _, err := os.Stat(RunDir(b.dataDir, req.Run.ID)); !os.IsNotExist(err) {
			t.Fatalf("run directory left behind: %v", err)
		}
	})

	t.Run("RelativeBaseDir", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		req, _ := b.request(t, func(s *jobspec.Spec) {
			s.Target.Config = &localdir.Config{TargetType: localdir.Type, BaseDir: "relative/dir"}
		})
		out, err := b.exec.Execute(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != storage.RunFailed || out.Error.Code != "local_dir_config" || out.Error.Kind != targets.KindConfig {
			t.Fatalf("outcome = %+v %+v", out, out.Error)
		}
	})

	t.Run("AgeWithoutKeys", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		req, _ := b.request(t, func(s *jobspec.Spec) {
			s.Pipeline.Encryption = jobspec.Encryption{Type: jobspec.EncryptionAgeX25519, KeyName: "default"}
		})
		out, err := b.exec.Execute(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != storage.RunFailed || out.Error.Code != backup.CodeEncryptionKey || out.Error.Hint == "" {
			t.Fatalf("outcome = %+v %+v", out, out.Error)
		}
	})

	t.Run("Canceled", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		req, _ := b.request(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		out, err := b.exec.Execute(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != storage.RunCanceled {
			t.Fatalf("outcome = %+v", out)
		}
		if _, err := os.Stat(filepath.Join(b.baseDir, req.Job.ID, req.Run.ID, targets.CompleteName)); err == nil {
			t.Fatal("a canceled run wrote complete.json")
		}
	})
}

func TestIndexSnapshot(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	job := storage.Job{ID: "job-1", Name: "j", ScheduleTimezone: "UTC", OverlapPolicy: "queue", MissedRunPolicy: "skip", SpecJSON: "{}"}
	ended := int64(200)
	run := storage.Run{ID: "run-1", JobID: job.ID, Status: storage.RunSuccess, StartedAt: 100, EndedAt: &ended}
	failed := storage.Run{ID: "run-2", JobID: job.ID, Status: storage.RunFailed, StartedAt: 100, EndedAt: &ended}
	art := &runs.Artifact{NodeID: "hub", TargetType: "local_dir", TargetSnapshot: json.RawMessage(`{"node_id":"hub","target":{"type":"local_dir","base_dir":"/bk"}}`),
		Format: "archive_v1", SourceFiles: ptr(int64(3)), TransferBytes: ptr(int64(4096))}
	err := db.Write(ctx, func(q storage.Q) error {
		if err := q.InsertJob(ctx, job); err != nil {
			return err
		}
		for _, r := range []storage.Run{run, failed} {
			if err := q.InsertRun(ctx, r); err != nil {
				return err
			}
		}
		if err := IndexSnapshot(ctx, q, runs.Finished{Run: run, Job: job, Outcome: runs.Outcome{Status: storage.RunSuccess, Artifact: art}}); err != nil {
			return err
		}
		return IndexSnapshot(ctx, q, runs.Finished{Run: failed, Job: job, Outcome: runs.Outcome{Status: storage.RunFailed, Artifact: art}})
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := db.Reader().GetRunArtifact(ctx, job.ID, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != storage.SnapshotPresent || a.StartedAt != 100 || a.EndedAt != 200 || *a.SourceFiles != 3 ||
		*a.TransferBytes != 4096 || a.TargetSnapshotJSON != string(art.TargetSnapshot) {
		t.Fatalf("indexed snapshot = %+v", a)
	}
	if _, err := db.Reader().GetRunArtifact(ctx, job.ID, failed.ID); err == nil {
		t.Fatal("a failed run was indexed as a snapshot")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCleanRunDirs(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	if err := CleanRunDirs(data); err != nil {
		t.Fatalf("no runs directory yet: %v", err)
	}
	left := filepath.Join(RunDir(data, "crashed-run"), "staging", "payload.part000001")
	os.MkdirAll(filepath.Dir(left), 0o700)
	os.WriteFile(left, []byte("x"), 0o600)
	if err := CleanRunDirs(data); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(data, "runs")); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
}

// A local_dir target reached through a symlink into the data directory is refused before
// anything is written there: the node empties parts of it at start.
func TestExecuteRefusesTargetInsideDataDir(t *testing.T) {
	t.Parallel()
	b := setup(t)
	link := filepath.Join(t.TempDir(), "to-data")
	if err := os.Symlink(b.dataDir, link); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{b.dataDir, filepath.Join(b.dataDir, "runs"), filepath.Join(link, "backups")} {
		req, _ := b.request(t, func(s *jobspec.Spec) { s.Target.Config = &localdir.Config{TargetType: localdir.Type, BaseDir: dir} })
		out, err := b.exec.Execute(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != storage.RunFailed || out.Error == nil || out.Error.Code != CodeTargetInsideDataDir {
			t.Fatalf("%s: outcome = %+v error %+v", dir, out, out.Error)
		}
		if _, err := os.Stat(filepath.Join(b.dataDir, "backups")); !os.IsNotExist(err) {
			t.Fatalf("%s: something was written into the data directory: %v", dir, err)
		}
	}
}
