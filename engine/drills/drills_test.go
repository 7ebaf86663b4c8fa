package drills

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/jobgate"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/notify/channel/webhook"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// Saturday 3 January 2026, noon UTC: the weekly drill (Sundays 03:00) is 15 hours away.
var t0 = time.Date(2026, 1, 3, 12, 0, 0, 0, time.UTC)

const jobID = "00000000-0000-4000-8000-000000000001"

type testBundle struct {
	db      *storage.DB
	clock   *clock.Fake
	ops     *operations.Service
	drills  *Service
	gate    *jobgate.Gate
	baseDir string
	src     string
	raw     bool // the job's format is raw_tree_v1
	passes  chan struct{}

	hookMu   sync.Mutex
	webhooks []webhook.Body
}

// memSecrets serves the one webhook destination; its placeholder row in secrets makes it a
// destination the queue lists.
type memSecrets struct{ payload []byte }

func (m memSecrets) Get(context.Context, string, string, string) ([]byte, error) {
	return m.payload, nil
}

func setup(t *testing.T) *testBundle { return setupFormat(t, false) }

func setupFormat(t *testing.T, raw bool) *testBundle {
	t.Helper()
	ctx := context.Background()
	b := &testBundle{db: storagetest.Open(t), clock: clock.NewFake(t0), baseDir: filepath.Join(t.TempDir(), "bk"),
		src: filepath.Join(t.TempDir(), "src"), passes: make(chan struct{}, 64), gate: jobgate.New(1), raw: raw}
	testtool.BuildTree(t, b.src, 1<<20)
	log := zerolog.New(zerolog.NewConsoleWriter(zerolog.ConsoleTestWriter(t)))

	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wb webhook.Body
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &wb); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		b.hookMu.Lock()
		b.webhooks = append(b.webhooks, wb)
		b.hookMu.Unlock()
	}))
	t.Cleanup(hook.Close)
	payload, _ := json.Marshal(map[string]string{"url": hook.URL})
	if _, err := b.db.Writer().Exec(ctx, `INSERT INTO secrets(id, node_id, kind, name, kid, nonce, ciphertext, created_at, updated_at)
		VALUES ('w', 'hub', 'webhook', 'ops', 1, x'00', x'00', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	n, err := notify.New(notify.Options{DB: b.db, Secrets: memSecrets{payload}, Clock: b.clock, Logger: log,
		PublicBaseURL: "https://hub.example.test", RateEvery: -1})
	if err != nil {
		t.Fatal(err)
	}

	b.ops = operations.New(operations.Config{DB: b.db, Clock: b.clock, Logger: log, DataDir: t.TempDir(),
		Opener: opener.New(opener.Config{Logger: log})})
	b.drills = New(Config{DB: b.db, Clock: b.clock, Log: log, Ops: b.ops, Gate: b.gate, Notifier: n})
	b.drills.hookPass = func() {
		select {
		case b.passes <- struct{}{}:
		default:
		}
	}
	spec := b.spec(t)
	if err := b.db.Writer().InsertJob(ctx, storage.Job{ID: jobID, Name: "files", ScheduleTimezone: "UTC",
		OverlapPolicy: "queue", MissedRunPolicy: "run_once", SpecJSON: spec, CreatedAt: t0.Unix(), UpdatedAt: t0.Unix()}); err != nil {
		t.Fatal(err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{b.ops.Run, n.Run, b.drills.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(runCtx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return b
}

func (b *testBundle) spec(t *testing.T) string {
	doc := map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{b.src}},
		"target": map[string]any{"type": "local_dir", "base_dir": b.baseDir, "part_size_bytes": 1 << 20}}
	if b.raw {
		doc["pipeline"] = map[string]any{"format": "raw_tree_v1"}
	}
	raw, _ := json.Marshal(doc)
	return string(raw)
}

// backup runs a real backup into the local target and records the run and its snapshot as the
// run queue does.
func (b *testBundle) backup(t *testing.T, runID string) {
	t.Helper()
	spec, err := jobspec.ParseAndValidate([]byte(b.spec(t)))
	if err != nil {
		t.Fatal(err)
	}
	tg, err := localdir.New(b.baseDir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := backup.Run(context.Background(), backup.Request{JobID: jobID, RunID: runID, StartedAt: b.clock.Now(),
		Spec: spec, Target: tg, StagingDir: filepath.Join(t.TempDir(), "staging"), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	sj, _ := json.Marshal(sum)
	snap, _ := json.Marshal(opener.FromSpec("hub", spec.Target))
	ended := b.clock.Now().Unix()
	ctx := context.Background()
	err = b.db.Write(ctx, func(q storage.Q) error {
		s, ts := string(sj), string(snap)
		if err := q.InsertRun(ctx, storage.Run{ID: runID, JobID: jobID, Status: storage.RunSuccess, StartedAt: ended - 1,
			EndedAt: &ended, SummaryJSON: &s, TargetSnapshotJSON: &ts}); err != nil {
			return err
		}
		return q.UpsertRunArtifact(ctx, storage.RunArtifact{RunID: runID, JobID: jobID, NodeID: "hub", TargetType: "local_dir",
			TargetSnapshotJSON: ts, ArtifactFormat: sum.ArtifactFormat, Status: storage.SnapshotPresent, StartedAt: ended - 1,
			EndedAt: ended, CreatedAt: ended, UpdatedAt: ended})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (b *testBundle) setVerification(t *testing.T, v string) {
	t.Helper()
	if err := b.db.Writer().SetJobVerificationConfig(context.Background(), jobID, &v, b.clock.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	b.drills.JobChanged(jobID)
}

// pass waits for the drill loop to finish a pass (its timer armed).
func (b *testBundle) pass(t *testing.T) {
	t.Helper()
	select {
	case <-b.passes:
	case <-time.After(time.Until(deadline(t))):
		t.Fatal("no drill loop pass before the test deadline")
	}
}

// settle drains passes already reported, then waits for a fresh one.
func (b *testBundle) settle(t *testing.T) {
	t.Helper()
	for {
		select {
		case <-b.passes:
			continue
		default:
		}
		break
	}
	b.drills.Wake()
	b.pass(t)
}

func deadline(t *testing.T) time.Time {
	if d, ok := t.Deadline(); ok {
		return d
	}
	return time.Now().Add(2 * time.Minute)
}

// waitFor polls a database condition until the test's deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for time.Now().Before(deadline(t)) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling rows, not synchronising on time
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (b *testBundle) verification(t *testing.T) storage.JobVerification {
	t.Helper()
	v, err := b.db.Reader().GetJobVerification(context.Background(), jobID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (b *testBundle) drillOps(t *testing.T, runID string) []storage.Operation {
	t.Helper()
	ops, err := b.db.Reader().ListOperationsBySubject(context.Background(), operations.SubjectRun, runID, 100)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// waitProven waits for the job's drill result.
func (b *testBundle) waitResult(t *testing.T) storage.JobVerification {
	t.Helper()
	var v storage.JobVerification
	waitFor(t, "the drill's result on the job", func() bool {
		var err error
		v, err = b.db.Reader().GetJobVerification(context.Background(), jobID)
		return err == nil && v.LastVerifyStatus != nil && v.RunningOpID == nil
	})
	return v
}

func TestDrillFiresOnScheduleWithFakeClock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const run = "00000000-0000-4000-8000-000000000101"
	b.backup(t, run)
	b.setVerification(t, `{"schedule":"0 3 * * 0","timezone":"UTC","mode":"verify"}`)
	b.settle(t)
	if ops := b.drillOps(t, run); len(ops) != 0 {
		t.Fatalf("a drill ran before its trigger: %+v", ops)
	}
	// Saturday 23:59: still nothing.
	b.clock.Set(time.Date(2026, 1, 3, 23, 59, 0, 0, time.UTC))
	b.settle(t)
	if ops := b.drillOps(t, run); len(ops) != 0 {
		t.Fatalf("a drill ran before its trigger: %+v", ops)
	}
	// Sunday 03:00:10 — the trigger, within the grace.
	b.clock.Set(time.Date(2026, 1, 4, 3, 0, 10, 0, time.UTC))
	b.pass(t)
	v := b.waitResult(t)
	if *v.LastVerifyStatus != storage.OperationSuccess || v.LastProvenAt == nil || v.LastVerifyOpID == nil ||
		v.LastScheduledAt == nil || *v.LastScheduledAt != time.Date(2026, 1, 4, 3, 0, 0, 0, time.UTC).Unix() {
		t.Fatalf("job verification after the drill: %+v", v)
	}
	ops := b.drillOps(t, run)
	if len(ops) != 1 || ops[0].ID != *v.LastVerifyOpID || ops[0].Kind != storage.OperationVerify || ops[0].NodeID != "hub" {
		t.Fatalf("drill operations %+v", ops)
	}
	ev, _ := b.db.Reader().ListOperationEvents(context.Background(), ops[0].ID, 0, 100)
	if len(ev) == 0 || ev[0].FieldsJSON == nil || !strings.Contains(*ev[0].FieldsJSON, `"source":"schedule"`) ||
		!strings.Contains(*ev[0].FieldsJSON, `"drill":true`) {
		t.Fatalf("start event %+v", ev)
	}
	// The same trigger never fires twice; the next one is a week later.
	b.clock.Advance(time.Hour)
	b.settle(t)
	if ops := b.drillOps(t, run); len(ops) != 1 {
		t.Fatalf("%d drills after one trigger", len(ops))
	}
	if len(b.webhooksSeen()) != 0 {
		t.Fatal("a successful drill notified")
	}
}

func (b *testBundle) webhooksSeen() []webhook.Body {
	b.hookMu.Lock()
	defer b.hookMu.Unlock()
	return append([]webhook.Body(nil), b.webhooks...)
}

func TestCorruptedPartFailsTheDrillAndNotifies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const run = "00000000-0000-4000-8000-000000000102"
	b.backup(t, run)
	testtool.Corrupt(t, filepath.Join(b.baseDir, jobID, run, format.PartName(1)))
	b.setVerification(t, `{"schedule":"0 3 * * 0","timezone":"UTC","mode":"restore_test"}`)
	b.settle(t)
	b.clock.Set(time.Date(2026, 1, 4, 3, 0, 0, 0, time.UTC))
	b.pass(t)
	v := b.waitResult(t)
	if *v.LastVerifyStatus != storage.OperationFailed || v.LastProvenAt != nil {
		t.Fatalf("job verification after a failed drill: %+v", v)
	}
	op, err := b.db.Reader().GetOperation(context.Background(), *v.LastVerifyOpID)
	if err != nil || op.Error == nil || !strings.Contains(*op.Error, format.PartName(1)) {
		t.Fatalf("drill operation %+v %v: want an error naming the damaged part", op, err)
	}
	var got []webhook.Body
	waitFor(t, "the verify_failed webhook", func() bool { got = b.webhooksSeen(); return len(got) > 0 })
	wb := got[0]
	if wb.Event != notify.WebhookEventVerifyFailed || wb.OperationID == nil || *wb.OperationID != op.ID ||
		wb.RunID == nil || *wb.RunID != run || wb.Error == nil || !strings.Contains(wb.Subject, "drill") {
		t.Fatalf("webhook %+v", wb)
	}
}

func TestDrillWaitsForTheJobsBackup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const run = "00000000-0000-4000-8000-000000000103"
	b.backup(t, run)
	const backupRun = "00000000-0000-4000-8000-000000000104"
	if err := b.db.Writer().InsertRun(ctx, storage.Run{ID: backupRun, JobID: jobID, Status: storage.RunRunning,
		StartedAt: b.clock.Now().Unix()}); err != nil {
		t.Fatal(err)
	}
	if err := b.drills.Request(ctx, jobID); err != nil {
		t.Fatal(err)
	}
	b.settle(t)
	if ops := b.drillOps(t, run); len(ops) != 0 {
		t.Fatalf("a drill started while a backup of its job ran: %+v", ops)
	}
	if v := b.verification(t); v.PendingAt == nil {
		t.Fatalf("the drill is no longer pending: %+v", v)
	}
	if _, err := b.db.Writer().Exec(ctx, `UPDATE runs SET status = 'success', ended_at = ? WHERE id = ?`, b.clock.Now().Unix(), backupRun); err != nil {
		t.Fatal(err)
	}
	b.drills.Wake() // what the run queue's after-finish hook does
	v := b.waitResult(t)
	if *v.LastVerifyStatus != storage.OperationSuccess {
		t.Fatalf("drill after the backup: %+v", v)
	}
}

// A verify started by hand on the job's latest snapshot counts as proof; one of an older snapshot
// does not.
func TestManualVerifyOfLatestSnapshotProvesTheJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const older, latest = "00000000-0000-4000-8000-000000000105", "00000000-0000-4000-8000-000000000106"
	b.backup(t, older)
	b.clock.Advance(time.Minute)
	b.backup(t, latest)
	op, err := b.ops.StartVerify(context.Background(), older, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the verify of the older snapshot", func() bool {
		o, _ := b.db.Reader().GetOperation(context.Background(), op.ID)
		return o.Status != storage.OperationRunning
	})
	if _, err := b.db.Reader().GetJobVerification(context.Background(), jobID); err == nil {
		t.Fatal("a verify of an older snapshot was recorded as the job's proof")
	}
	if _, err := b.ops.StartVerify(context.Background(), latest, 0); err != nil {
		t.Fatal(err)
	}
	v := b.waitResult(t)
	if *v.LastVerifyStatus != storage.OperationSuccess || v.LastProvenAt == nil {
		t.Fatalf("%+v", v)
	}

}

// TestRawTreeDrillHashesData: a drill of a raw_tree_v1 snapshot hashes data/ against the index
// (the original had no raw branch and reported every file missing). Intact, it proves the job; a
// damaged file fails the sampled restore_test, which always includes the largest file.
func TestRawTreeDrillHashesData(t *testing.T) {
	t.Parallel()
	b := setupFormat(t, true)
	const run = "00000000-0000-4000-8000-000000000105"
	b.backup(t, run)
	b.setVerification(t, `{"schedule":"0 3 * * 0","timezone":"UTC","mode":"verify"}`)
	b.settle(t)
	b.clock.Set(time.Date(2026, 1, 4, 3, 0, 0, 0, time.UTC))
	b.pass(t)
	v := b.waitResult(t)
	if *v.LastVerifyStatus != storage.OperationSuccess || v.LastProvenAt == nil {
		t.Fatalf("drill of an intact raw tree: %+v", v)
	}

	largest := filepath.Join(b.baseDir, jobID, run, "data", strings.TrimPrefix(b.src, "/"), "sparse.img")
	testtool.Corrupt(t, largest)
	b.setVerification(t, `{"schedule":"0 3 * * 1","timezone":"UTC","mode":"restore_test","sample_files":1}`)
	b.settle(t)
	b.clock.Set(time.Date(2026, 1, 5, 3, 0, 0, 0, time.UTC))
	b.pass(t)
	waitFor(t, "the second drill's result", func() bool {
		v = b.verification(t)
		return v.RunningOpID == nil && v.LastVerifyStatus != nil && *v.LastVerifyStatus == storage.OperationFailed
	})
	op, err := b.db.Reader().GetOperation(context.Background(), *v.LastVerifyOpID)
	if err != nil || op.SummaryJSON == nil || !strings.Contains(*op.SummaryJSON, "sparse.img: hash_mismatch") {
		t.Fatalf("failed drill operation %+v %v: want its summary to name the damaged file", op, err)
	}
}
