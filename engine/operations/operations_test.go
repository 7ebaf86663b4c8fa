package operations_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

type bundle struct {
	db      *storage.DB
	svc     *operations.Service
	dataDir string
	baseDir string
	src     string
	jobID   string
	clock   *clock.Fake
}

func uuid(n int) string {
	return "00000000-0000-4000-8000-" + strings.Repeat("0", 12-len(itoa(n))) + itoa(n)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{db: storagetest.Open(t), dataDir: t.TempDir(), baseDir: filepath.Join(t.TempDir(), "bk"),
		src: filepath.Join(t.TempDir(), "src"), jobID: uuid(1), clock: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	testtool.BuildTree(t, b.src, 2<<20)
	log := zerolog.New(zerolog.NewTestWriter(t))
	b.svc = operations.New(operations.Config{DB: b.db, Clock: b.clock, Logger: log, DataDir: b.dataDir,
		Opener: opener.New(opener.Config{Logger: log})})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	err := b.db.Writer().InsertJob(context.Background(), storage.Job{ID: b.jobID, Name: "files", ScheduleTimezone: "UTC",
		OverlapPolicy: "queue", MissedRunPolicy: "skip", SpecJSON: "{}"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// backup runs a real backup of src into the local target and records the run and snapshot the
// way the run queue does.
func (b *bundle) backup(t *testing.T, n int) string {
	t.Helper()
	runID := uuid(100 + n)
	raw, _ := json.Marshal(map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{b.src}},
		"target": map[string]any{"type": "local_dir", "base_dir": b.baseDir, "part_size_bytes": 1 << 20}})
	spec, err := jobspec.ParseAndValidate(raw)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := localdir.New(b.baseDir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := backup.Run(context.Background(), backup.Request{JobID: b.jobID, RunID: runID, StartedAt: b.clock.Now(),
		Spec: spec, Target: tg, StagingDir: filepath.Join(t.TempDir(), "staging"), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	sj, _ := json.Marshal(sum)
	snap, _ := json.Marshal(opener.FromSpec("hub", spec.Target))
	ended := b.clock.Now().Unix() + int64(n)
	ctx := context.Background()
	err = b.db.Write(ctx, func(q storage.Q) error {
		s, ts := string(sj), string(snap)
		if err := q.InsertRun(ctx, storage.Run{ID: runID, JobID: b.jobID, Status: storage.RunSuccess, StartedAt: ended - 1,
			EndedAt: &ended, SummaryJSON: &s, TargetSnapshotJSON: &ts}); err != nil {
			return err
		}
		return q.UpsertRunArtifact(ctx, storage.RunArtifact{RunID: runID, JobID: b.jobID, NodeID: "hub", TargetType: "local_dir",
			TargetSnapshotJSON: ts, ArtifactFormat: "archive_v1", Status: storage.SnapshotPresent, StartedAt: ended - 1,
			EndedAt: ended, CreatedAt: ended, UpdatedAt: ended})
	})
	if err != nil {
		t.Fatal(err)
	}
	return runID
}

func (b *bundle) runDir(runID string) string { return filepath.Join(b.baseDir, b.jobID, runID) }

// wait polls the operation until it has ended (or the test's deadline).
func (b *bundle) wait(t *testing.T, id string) storage.Operation {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	for time.Now().Before(deadline) {
		op, err := b.db.Reader().GetOperation(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if op.Status != storage.OperationRunning {
			return op
		}
		time.Sleep(10 * time.Millisecond) // polling a database row, not synchronising on time
	}
	t.Fatalf("operation %s did not end before the test deadline", id)
	return storage.Operation{}
}

func (b *bundle) events(t *testing.T, id string) []storage.OperationEvent {
	t.Helper()
	ev, err := b.db.Reader().ListOperationEvents(context.Background(), id, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func kinds(ev []storage.OperationEvent) []string {
	var out []string
	for _, e := range ev {
		out = append(out, e.Kind)
	}
	return out
}

func TestRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("FullIntoNewDirectory", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runID := b.backup(t, 1)
		dest := filepath.Join(t.TempDir(), "restore", "here")
		op, err := b.svc.StartRestore(ctx, runID, operations.RestoreRequest{
			Destination: operations.Destination{Type: "local_fs", NodeID: "hub", Directory: dest}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if op.Status != storage.OperationRunning || *op.SubjectKind != "run" || *op.SubjectID != runID || op.Kind != "restore" {
			t.Fatalf("started operation = %+v", op)
		}
		op = b.wait(t, op.ID)
		if op.Status != storage.OperationSuccess || op.Error != nil {
			t.Fatalf("operation = %+v error %v", op, deref(op.Error))
		}
		testtool.CompareTrees(t, b.src, testtool.ArchivePath(dest, b.src), false)
		var sum map[string]any
		if err := json.Unmarshal([]byte(*op.SummaryJSON), &sum); err != nil {
			t.Fatal(err)
		}
		d := sum["destination"].(map[string]any)
		if d["type"] != "local_fs" || d["directory"] != dest || sum["conflict_policy"] != "overwrite" || sum["written"].(float64) < 120 {
			t.Fatalf("summary = %v", sum)
		}
		var prog struct {
			Kind, Stage string
			TS          int64
			Done        struct{ Bytes int64 }
			Total       struct{ Bytes int64 }
		}
		if err := json.Unmarshal([]byte(*op.ProgressJSON), &prog); err != nil {
			t.Fatal(err)
		}
		if prog.Kind != "restore" || prog.Stage != "restore" || prog.Done.Bytes != prog.Total.Bytes || prog.Total.Bytes == 0 ||
			prog.TS != b.clock.Now().Unix() {
			t.Fatalf("final progress = %+v", prog)
		}
		got := kinds(b.events(t, op.ID))
		if strings.Join(got, ",") != "start,manifest,complete" {
			t.Fatalf("events = %v", got)
		}
		if _, err := os.Stat(filepath.Join(b.dataDir, "operations", op.ID)); !os.IsNotExist(err) {
			t.Fatalf("operation directory left behind: %v", err)
		}
		list, err := b.db.Reader().ListOperationsBySubject(ctx, "run", runID, 10)
		if err != nil || len(list) != 1 || list[0].ID != op.ID {
			t.Fatalf("operations of the run = %v %v", list, err)
		}
	})

	t.Run("SelectionAndConflictFail", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runID := b.backup(t, 1)
		dest := t.TempDir()
		sel := strings.TrimPrefix(filepath.Join(b.src, "small", "d01"), "/")
		op, err := b.svc.StartRestore(ctx, runID, operations.RestoreRequest{Destination: operations.Destination{Directory: dest},
			Selection: &restore.Selection{Dirs: []string{sel}}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if op = b.wait(t, op.ID); op.Status != storage.OperationSuccess {
			t.Fatalf("selection restore: %+v %s", op, deref(op.Error))
		}
		testtool.CompareTrees(t, filepath.Join(b.src, "small", "d01"), filepath.Join(dest, sel), false)
		if _, err := os.Stat(testtool.ArchivePath(dest, filepath.Join(b.src, "big"))); !os.IsNotExist(err) {
			t.Fatalf("unselected directory restored: %v", err)
		}
		// The same restore again with conflict policy fail meets the files it wrote.
		op, err = b.svc.StartRestore(ctx, runID, operations.RestoreRequest{Destination: operations.Destination{Directory: dest},
			ConflictPolicy: "fail", Selection: &restore.Selection{Dirs: []string{sel}}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if op = b.wait(t, op.ID); op.Status != storage.OperationFailed || !strings.HasPrefix(deref(op.Error), restore.CodeConflict) {
			t.Fatalf("conflict fail: %+v %s", op, deref(op.Error))
		}
		ev := b.events(t, op.ID)
		last := ev[len(ev)-1]
		if last.Kind != "failed" || last.Level != "error" || !strings.Contains(*last.FieldsJSON, restore.CodeConflict) {
			t.Fatalf("last event = %+v %s", last, deref(last.FieldsJSON))
		}
	})

	t.Run("CorruptPartIsNamed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runID := b.backup(t, 1)
		testtool.Corrupt(t, filepath.Join(b.runDir(runID), "payload.part000002"))
		op, err := b.svc.StartRestore(ctx, runID, operations.RestoreRequest{Destination: operations.Destination{Directory: t.TempDir()}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		op = b.wait(t, op.ID)
		if op.Status != storage.OperationFailed || !strings.Contains(deref(op.Error), "payload.part000002") ||
			!strings.Contains(deref(op.Error), "hash_mismatch") {
			t.Fatalf("operation = %+v error %q", op, deref(op.Error))
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runID := b.backup(t, 1)
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, []byte("x"), 0o600)
		// A symlink to the data directory, and one to a parent of it, used as (or above) a
		// destination that does not exist yet: the lexical check let both through.
		links := t.TempDir()
		toData := filepath.Join(links, "to-data")
		if err := os.Symlink(b.dataDir, toData); err != nil {
			t.Fatal(err)
		}
		toParent := filepath.Join(links, "to-parent")
		if err := os.Symlink(filepath.Dir(b.dataDir), toParent); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name         string
			req          operations.RestoreRequest
			code, reason string
		}{
			{"Relative", operations.RestoreRequest{Destination: operations.Destination{Directory: "rel/dir"}}, "invalid_destination", "not_absolute"},
			{"Empty", operations.RestoreRequest{Destination: operations.Destination{Directory: " "}}, "invalid_destination", "required"},
			{"IsAFile", operations.RestoreRequest{Destination: operations.Destination{Directory: file}}, "invalid_destination", "not_directory"},
			{"DataDir", operations.RestoreRequest{Destination: operations.Destination{Directory: filepath.Join(b.dataDir, "x")}}, "invalid_destination", "inside_data_dir"},
			{"DataDirEqual", operations.RestoreRequest{Destination: operations.Destination{Directory: b.dataDir}}, "invalid_destination", "inside_data_dir"},
			{"SymlinkToDataDir", operations.RestoreRequest{Destination: operations.Destination{Directory: toData}}, "invalid_destination", "inside_data_dir"},
			{"BelowSymlinkToDataDir", operations.RestoreRequest{Destination: operations.Destination{Directory: filepath.Join(toData, "new", "dir")}}, "invalid_destination", "inside_data_dir"},
			{"ThroughSymlinkedParent", operations.RestoreRequest{Destination: operations.Destination{Directory: filepath.Join(toParent, filepath.Base(b.dataDir), "x")}}, "invalid_destination", "inside_data_dir"},
			// A parent of the data directory: a snapshot holding its path would overwrite it.
			{"ParentOfDataDir", operations.RestoreRequest{Destination: operations.Destination{Directory: filepath.Dir(b.dataDir)}}, "invalid_destination", "inside_data_dir"},
			{"Root", operations.RestoreRequest{Destination: operations.Destination{Directory: "/"}}, "invalid_destination", "inside_data_dir"},
			{"SymlinkToParentOfDataDir", operations.RestoreRequest{Destination: operations.Destination{Directory: toParent}}, "invalid_destination", "inside_data_dir"},
			{"WebDAVNoBaseURL", operations.RestoreRequest{Destination: operations.Destination{Type: "webdav", Directory: "/x"}}, "invalid_destination", "required"},
			{"WebDAVBaseURL", operations.RestoreRequest{Destination: operations.Destination{Type: "webdav", BaseURL: "file:///etc", SecretName: "s"}}, "invalid_destination", "invalid_value"},
			{"WebDAVPrefix", operations.RestoreRequest{Destination: operations.Destination{Type: "webdav", BaseURL: "https://dav.example/", SecretName: "s", Prefix: "a/../../b"}}, "invalid_destination", "invalid_value"},
			{"WebDAVNoSecretName", operations.RestoreRequest{Destination: operations.Destination{Type: "webdav", BaseURL: "https://dav.example/"}}, "invalid_destination", "required"},
			{"WebDAVNoSuchSecret", operations.RestoreRequest{Destination: operations.Destination{Type: "webdav", BaseURL: "https://dav.example/", SecretName: "s"}}, "missing_webdav_secret", "missing_secret"},
			{"WebDAVOnAgent", operations.RestoreRequest{Destination: operations.Destination{Type: "webdav", NodeID: "agent-1", BaseURL: "https://dav.example/", SecretName: "s"}}, "invalid_destination", "unsupported"},
			{"Agent", operations.RestoreRequest{Destination: operations.Destination{NodeID: "agent-1", Directory: "/x"}}, "invalid_destination", "unsupported"},
			{"Conflict", operations.RestoreRequest{Destination: operations.Destination{Directory: "/x"}, ConflictPolicy: "merge"}, "invalid_conflict_policy", "invalid_value"},
			{"Selection", operations.RestoreRequest{Destination: operations.Destination{Directory: "/x"}, Selection: &restore.Selection{Files: []string{"../etc", " "}}}, "invalid_selection", "empty"},
		} {
			_, err := b.svc.StartRestore(ctx, runID, tc.req, 1)
			var ie *operations.InputError
			if !errors.As(err, &ie) || ie.Code != tc.code || ie.Reason != tc.reason {
				t.Errorf("%s: error %v, want %s/%s", tc.name, err, tc.code, tc.reason)
			}
		}
		if _, err := b.svc.StartRestore(ctx, uuid(999), operations.RestoreRequest{Destination: operations.Destination{Directory: "/x"}}, 1); !errors.Is(err, operations.ErrRunNotFound) {
			t.Errorf("unknown run: %v", err)
		}
		// A failed run has no snapshot.
		failed := uuid(998)
		b.db.Writer().InsertRun(ctx, storage.Run{ID: failed, JobID: b.jobID, Status: storage.RunFailed, StartedAt: 1})
		_, err := b.svc.StartRestore(ctx, failed, operations.RestoreRequest{Destination: operations.Destination{Directory: "/x"}}, 1)
		var ie *operations.InputError
		if !errors.As(err, &ie) || ie.Code != "invalid_run" {
			t.Errorf("failed run: %v", err)
		}
		// Nothing was started.
		if ops, _ := b.db.Reader().ListOperationsByStatus(ctx, storage.OperationRunning, 10); len(ops) != 0 {
			t.Errorf("operations started for bad input: %v", ops)
		}
	})
}

func TestVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	good := b.backup(t, 1)
	bad := b.backup(t, 2)

	op, err := b.svc.StartVerify(ctx, good, 1)
	if err != nil {
		t.Fatal(err)
	}
	op = b.wait(t, op.ID)
	var res restore.VerifyResult
	if op.Status != storage.OperationSuccess || json.Unmarshal([]byte(*op.SummaryJSON), &res) != nil || !res.OK || res.FilesTotal < 120 || res.FilesFailed != 0 {
		t.Fatalf("verify = %+v summary %s", op, deref(op.SummaryJSON))
	}
	if got := strings.Join(kinds(b.events(t, op.ID)), ","); got != "start,manifest,verify,complete" {
		t.Fatalf("events = %s", got)
	}

	testtool.Corrupt(t, filepath.Join(b.runDir(bad), "payload.part000003"))
	op, err = b.svc.StartVerify(ctx, bad, 1)
	if err != nil {
		t.Fatal(err)
	}
	op = b.wait(t, op.ID)
	if op.Status != storage.OperationFailed || !strings.Contains(deref(op.Error), "payload.part000003") {
		t.Fatalf("verify of a corrupted snapshot = %+v error %q", op, deref(op.Error))
	}
	if _, err := os.Stat(filepath.Join(b.dataDir, "operations", op.ID)); !os.IsNotExist(err) {
		t.Fatalf("scratch directory left behind: %v", err)
	}
}

func TestCancelAndRecover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	runID := b.backup(t, 1)

	// An operation left running by a crash.
	subject, kind := runID, "run"
	crashed := storage.Operation{ID: uuid(500), Kind: "restore", Status: "running", NodeID: "hub", StartedAt: 1,
		SubjectKind: &kind, SubjectID: &subject, CreatedAt: 1, UpdatedAt: 1}
	if err := b.db.Writer().InsertOperation(ctx, crashed); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(b.dataDir, "operations", crashed.ID, "staging"), 0o700)
	os.MkdirAll(filepath.Join(b.dataDir, "operations", "stray", "restore"), 0o700)
	n, err := b.svc.Recover(ctx)
	if err != nil || n != 1 {
		t.Fatalf("recover: %d %v", n, err)
	}
	got, _ := b.db.Reader().GetOperation(ctx, crashed.ID)
	if got.Status != storage.OperationFailed || !strings.HasPrefix(deref(got.Error), operations.CodeHubRestarted) {
		t.Fatalf("recovered operation = %+v %s", got, deref(got.Error))
	}
	if entries, _ := os.ReadDir(filepath.Join(b.dataDir, "operations")); len(entries) != 0 {
		t.Fatalf("leftovers of interrupted operations: %v", entries)
	}

	// Cancel a running restore: hold it at its first part by making that part a FIFO that no
	// one writes until the cancel was requested.
	part := filepath.Join(b.runDir(runID), "payload.part000001")
	data, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(part)
	if err := mkfifo(part); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	op, err := b.svc.StartRestore(ctx, runID, operations.RestoreRequest{Destination: operations.Destination{Directory: t.TempDir()}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.svc.Cancel(ctx, op.ID, 1, "wrong snapshot")
	if err != nil || c.CancelRequestedAt == nil {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	if _, err := b.svc.Cancel(ctx, op.ID, 1, "again"); err != nil {
		t.Fatal(err)
	}
	// Feed the FIFO so the blocked read returns and the restore notices the cancel.
	go func() {
		if f, err := os.OpenFile(part, os.O_WRONLY, 0); err == nil {
			f.Write(data)
			f.Close()
		}
	}()
	op = b.wait(t, op.ID)
	if op.Status != storage.OperationCanceled {
		t.Fatalf("canceled operation = %+v %s", op, deref(op.Error))
	}
	got2 := kinds(b.events(t, op.ID))
	if n := strings.Count(strings.Join(got2, ","), "cancel_requested"); n != 1 || got2[len(got2)-1] != "canceled" {
		t.Fatalf("events = %v", got2)
	}
	if _, err := b.svc.Cancel(ctx, uuid(12345), 1, ""); !errors.Is(err, operations.ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
}

func TestEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	runID := b.backup(t, 1)
	prefix := strings.TrimPrefix(filepath.Join(b.src, "small"), "/")
	page, err := b.svc.Entries(ctx, runID, restore.ListOptions{Prefix: prefix, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 7 || len(page.Entries) != 3 || page.Entries[0].Name != "d00" || page.NextCursor == "" {
		t.Fatalf("page = %+v", page)
	}
	cache := filepath.Join(b.dataDir, "cache", "entries", runID, operations.IndexName)
	if _, err := os.Stat(cache); err != nil {
		t.Fatalf("index not cached: %v", err)
	}
	page2, err := b.svc.Entries(ctx, runID, restore.ListOptions{Prefix: prefix, Limit: 3, Cursor: page.NextCursor})
	if err != nil || len(page2.Entries) != 3 || page2.Entries[0].Name != "d03" {
		t.Fatalf("second page = %+v %v", page2, err)
	}
	if _, err := b.svc.Entries(ctx, runID, restore.ListOptions{Cursor: "zzz"}); !errors.Is(err, operations.ErrInvalidCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, err := b.svc.Entries(ctx, uuid(777), restore.ListOptions{}); !errors.Is(err, operations.ErrRunNotFound) {
		t.Fatalf("unknown run: %v", err)
	}
	// Once the snapshot is deleted, the next start drops its cached index.
	if err := b.db.Writer().SetSnapshotStatus(ctx, runID, storage.SnapshotDeleted, nil, nil, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(cache)); !os.IsNotExist(err) {
		t.Fatalf("cached index of a deleted snapshot kept: %v", err)
	}
}

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o600) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
