package agentsock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/agekeys"
	"github.com/bastion-backup/bastion/engine/backupexec"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// realChildMain is an agent process with the real backup and restore executors. With
// CHILD_GATE set, a restore stops right after reading its manifest (mid-way, before any file is
// written) until the test creates release-<op_id>, or the restore is canceled; each restore
// execution leaves a marker restore-<op_id>-<pid>-<ns>.
func realChildMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	dataDir, markers := os.Getenv("CHILD_DATA_DIR"), os.Getenv("CHILD_MARKERS")
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	managed, err := client.OpenManaged(dataDir, time.Now)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	snapshots := client.NewRestoreExecutor(dataDir, managed, log)
	restorer := gatedRestorer{inner: snapshots, verifier: snapshots, markers: markers, gate: os.Getenv("CHILD_GATE") != ""}
	// CHILD_OLD is an agent that predates entries_list and verify_task.
	var verifier client.Verifier = restorer
	var entries client.EntriesLister = snapshots
	if os.Getenv("CHILD_OLD") != "" {
		verifier, entries = nil, nil
	}
	err = client.Run(ctx, client.Options{
		HubURL: os.Getenv("CHILD_HUB_URL"), EnrollToken: os.Getenv("CHILD_TOKEN"), DataDir: dataDir,
		Heartbeat: faultHeartbeat, Logger: log, Managed: managed,
		Executor: client.NewBackupExecutor(dataDir, managed, log), Restorer: restorer, Verifier: verifier, Entries: entries,
		Backoff: &client.Backoff{Base: 50 * time.Millisecond, Cap: 300 * time.Millisecond},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	return 0
}

type gatedRestorer struct {
	inner    client.Restorer
	verifier client.Verifier
	markers  string
	gate     bool
}

func (g gatedRestorer) Restore(ctx context.Context, t *protocol.RestoreTask, emit func(*protocol.OperationEvent)) protocol.OperationResult {
	g.mark("restore", t.TaskID)
	return g.inner.Restore(ctx, t, g.gated(ctx, t.TaskID, emit))
}

// Verify is gated like a restore (a verify restores first, so it reads the manifest too).
func (g gatedRestorer) Verify(ctx context.Context, t *protocol.VerifyTask, emit func(*protocol.OperationEvent)) protocol.OperationResult {
	g.mark("verify", t.TaskID)
	return g.verifier.Verify(ctx, t, g.gated(ctx, t.TaskID, emit))
}

func (g gatedRestorer) mark(kind, id string) {
	name := fmt.Sprintf("%s-%s-%d-%d", kind, id, os.Getpid(), time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(g.markers, name), nil, 0o600); err != nil {
		panic(err)
	}
}

func (g gatedRestorer) gated(ctx context.Context, id string, emit func(*protocol.OperationEvent)) func(*protocol.OperationEvent) {
	return func(ev *protocol.OperationEvent) {
		emit(ev)
		if !g.gate || ev.Kind != "manifest" {
			return
		}
		_ = os.WriteFile(filepath.Join(g.markers, "gate-"+id), nil, 0o600)
		for {
			if _, err := os.Stat(filepath.Join(g.markers, "release-"+id)); err == nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// restoreSetup is a Hub with the real run queue, operations and secrets store, and a real agent
// process connected through a fault proxy.
type restoreSetup struct {
	db      *storage.DB
	store   *secrets.Store
	hub     *agentsock.Hub
	th      *testHub
	runs    *runs.Service
	ops     *operations.Service
	proxy   *faultProxy
	child   *childAgent
	agentID string
	markers string
	dataDir string
}

func newRestoreSetup(t *testing.T, gate bool) *restoreSetup {
	t.Helper()
	db := storagetest.Open(t)
	store := newSecretStore(t, db)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	ages := agekeys.New(store)
	runBridge := agentsock.NewRunBridge()
	restores := agentsock.NewRestoreBridge(store)
	h := agentsock.New(agentsock.Config{DB: db, Clock: clock.Real{}, Logger: log, Sink: runBridge, OnConnect: runBridge.AgentConnected,
		Operations: restores, Keys: ages, Snapshots: agentsock.StoreSnapshots{DB: db, Store: store, Keys: ages}, AckTimeout: time.Second})
	svc := runs.New(runs.Config{DB: db, Clock: clock.Real{}, Log: log, Agents: runBridge, OnFinished: []runs.FinishHook{backupexec.IndexSnapshot}})
	runBridge.Attach(h, svc)
	ops := operations.New(operations.Config{DB: db, Clock: clock.Real{}, Logger: log, DataDir: t.TempDir(),
		Opener: opener.New(opener.Config{Secrets: store, Logger: log}), Keys: ages, Remote: restores})
	restores.Attach(h, ops)
	runLoop(t, svc.Run)
	runLoop(t, ops.Run)
	th := serveTestHub(t, h, db)

	rs := &restoreSetup{db: db, store: store, hub: h, th: th, runs: svc, ops: ops, markers: t.TempDir(), dataDir: t.TempDir()}
	rs.proxy = newFaultProxy(t, th.srv.Listener.Addr().String())
	rs.child = startRealChild(t, rs.proxy.url(), newEnrollToken(t, db, nil), rs.dataDir, rs.markers, gate)
	rs.agentID = rs.child.agentID()
	waitFor(t, "agent connected", func() bool { return h.Connected(rs.agentID) && rs.proxy.linksOpened() == 1 })
	// The hello is handled after the connection counts as open: the agent's applied config comes
	// last in it, so once it is recorded, the hello's key clean-up is behind us and cannot race a
	// test's own changes to the agent's scope.
	waitFor(t, "agent applied its config", func() bool {
		a, err := db.Reader().GetAgent(context.Background(), rs.agentID)
		return err == nil && a.AppliedConfigSnapshotID != nil
	})
	return rs
}

func startRealChild(t *testing.T, hubURL, token, dataDir, markers string, gate bool, env ...string) *childAgent {
	t.Helper()
	env = append(env, childEnv+"=real", "CHILD_HUB_URL="+hubURL, "CHILD_TOKEN="+token)
	if gate {
		env = append(env, "CHILD_GATE=1")
	}
	return startChildProcess(t, dataDir, markers, env...)
}

// stopAgent stops the agent process and waits until the Hub has seen it go.
func (rs *restoreSetup) stopAgent(t *testing.T) {
	t.Helper()
	rs.child.stop()
	waitFor(t, "agent gone", func() bool { return !rs.hub.Connected(rs.agentID) })
}

// waitHeld waits until the gated agent holds operation id mid-way (see gatedRestorer).
func (rs *restoreSetup) waitHeld(t *testing.T, id string) {
	t.Helper()
	waitFor(t, "operation held mid-way", func() bool {
		_, err := os.Stat(filepath.Join(rs.markers, "gate-"+id))
		return err == nil
	})
}

// backupOnAgent makes a job on the agent backing up src into dst (a directory of the agent's
// machine), runs it and waits for its success.
// backupNewTree builds a tree of size bytes and backs it up on the agent into a new directory.
func (rs *restoreSetup) backupNewTree(t *testing.T, size int, encryption string) (src, dst, jobID, runID string) {
	t.Helper()
	src, dst = filepath.Join(t.TempDir(), "src"), t.TempDir()
	testtool.BuildTree(t, src, size)
	jobID, runID = rs.backupOnAgent(t, src, dst, encryption)
	return src, dst, jobID, runID
}

func (rs *restoreSetup) backupOnAgent(t *testing.T, src, dst, encryption string) (jobID, runID string) {
	t.Helper()
	ctx := context.Background()
	jobID = protocol.NewUUID()
	spec := fmt.Sprintf(`{"v":1,"type":"filesystem","pipeline":{"encryption":%s},"source":{"paths":[%q]},"target":{"type":"local_dir","base_dir":%q,"part_size_bytes":1048576}}`,
		encryption, src, dst)
	id := rs.agentID
	if err := rs.db.Writer().InsertJob(ctx, storage.Job{ID: jobID, Name: "on agent", AgentID: &id, ScheduleTimezone: "UTC",
		OverlapPolicy: "queue", MissedRunPolicy: "run_once", SpecJSON: spec, CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	r, err := rs.runs.Trigger(ctx, jobID, runs.SourceManual)
	if err != nil {
		t.Fatal(err)
	}
	var got storage.Run
	waitFor(t, "backup on the agent ended", func() bool {
		got, _ = rs.db.Reader().GetRun(ctx, r.ID)
		return got.EndedAt != nil
	})
	if got.Status != storage.RunSuccess {
		t.Fatalf("backup run %s: %s %s", got.Status, deref(got.Error), deref(got.SummaryJSON))
	}
	return jobID, r.ID
}

func (rs *restoreSetup) restore(t *testing.T, runID, dir string) storage.Operation {
	t.Helper()
	op, err := rs.ops.StartRestore(context.Background(), runID, operations.RestoreRequest{
		Destination: operations.Destination{Type: operations.DestinationLocalFS, NodeID: rs.agentID, Directory: dir}}, 1)
	if err != nil {
		t.Fatalf("start restore: %v", err)
	}
	return op
}

func (rs *restoreSetup) waitOp(t *testing.T, id string) storage.Operation {
	t.Helper()
	var op storage.Operation
	waitFor(t, "restore ended", func() bool {
		op, _ = rs.db.Reader().GetOperation(context.Background(), id)
		return op.Status != storage.OperationRunning
	})
	return op
}

func (rs *restoreSetup) opEvents(t *testing.T, id string) []string {
	t.Helper()
	evs, err := rs.db.Reader().ListOperationEvents(context.Background(), id, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

func count(kinds []string, kind string) int {
	n := 0
	for _, k := range kinds {
		if k == kind {
			n++
		}
	}
	return n
}

func restoreExecutions(t *testing.T, markers, opID string) int {
	t.Helper()
	es, err := os.ReadDir(markers)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "restore-"+opID+"-") {
			n++
		}
	}
	return n
}

// TestRestoreOnAgent: a job runs on a real agent process, then its snapshot is restored on the
// agent into a new directory, byte for byte; encrypted, the Hub first copies the age identity to
// the agent for the restore, and removes it from the agent when the restore ends.
func TestRestoreOnAgent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, encryption string }{
		{"Plain", `{"type":"none"}`},
		{"AgeEncrypted", `{"type":"age_x25519","key_name":"agent-key"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rs := newRestoreSetup(t, false)
			src, _, _, runID := rs.backupNewTree(t, 3<<20, tc.encryption)

			into := filepath.Join(t.TempDir(), "restored")
			op := rs.waitOp(t, rs.restore(t, runID, into).ID)
			if op.Status != storage.OperationSuccess {
				t.Fatalf("restore %s: %s; events %v", op.Status, deref(op.Error), rs.opEvents(t, op.ID))
			}
			testtool.CompareTrees(t, src, testtool.ArchivePath(into, src), false)
			var sum struct {
				Destination struct {
					NodeID    string `json:"node_id"`
					Directory string `json:"directory"`
				} `json:"destination"`
				Written int64 `json:"written"`
			}
			if err := json.Unmarshal([]byte(deref(op.SummaryJSON)), &sum); err != nil || sum.Destination.NodeID != rs.agentID ||
				sum.Destination.Directory != into || sum.Written == 0 {
				t.Fatalf("summary %s", deref(op.SummaryJSON))
			}
			kinds := rs.opEvents(t, op.ID)
			if kinds[0] != "start" || count(kinds, "manifest") != 1 || kinds[len(kinds)-1] != "complete" {
				t.Fatalf("operation events %v", kinds)
			}
			if op.ProgressJSON == nil || !strings.Contains(*op.ProgressJSON, `"kind":"restore"`) {
				t.Fatalf("the agent's progress did not reach the operation: %v", deref(op.ProgressJSON))
			}
			// The operation is finished before its task is closed (two writes, in that order).
			waitFor(t, "restore task completed", func() bool {
				tk, err := rs.db.Reader().GetAgentTask(ctx, op.ID)
				return err == nil && tk.CompletedAt != nil
			})
			tk, err := rs.db.Reader().GetAgentTask(ctx, op.ID)
			if err != nil || tk.Kind != storage.AgentTaskRestore || tk.CompletedAt == nil {
				t.Fatalf("restore task %+v %v", tk, err)
			}
			waitFor(t, "result acknowledged on the agent", func() bool { return resultAckedOnAgent(rs.dataDir, op.ID) })

			shared, err := rs.store.List(ctx, rs.agentID, secrets.KindBackupAgeIdentity)
			if err != nil {
				t.Fatal(err)
			}
			if tc.encryption == `{"type":"none"}` {
				if len(shared) != 0 {
					t.Fatalf("age keys shared for an unencrypted restore: %v", shared)
				}
				return
			}
			// The key was copied for this restore only: once it ended, neither the Hub's record of
			// the agent's scope nor the agent's own store keeps it.
			if len(shared) != 0 {
				t.Fatalf("age keys left in the agent's scope after the restore: %v", shared)
			}
			waitFor(t, "the agent forgot the age key", func() bool {
				raw, err := os.ReadFile(filepath.Join(rs.dataDir, "agent", "managed", "secrets.json"))
				return err == nil && !bytes.Contains(raw, []byte("agent-key")) && !bytes.Contains(raw, []byte("AGE-SECRET-KEY"))
			})
		})
	}
}

// TestRestoreOnAgentCanceled: a restore canceled mid-way on the agent ends canceled, once.
func TestRestoreOnAgentCanceled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := newRestoreSetup(t, true)
	src, _, _, runID := rs.backupNewTree(t, 1<<20, `{"type":"none"}`)
	into := filepath.Join(t.TempDir(), "restored")
	op := rs.restore(t, runID, into)
	rs.waitHeld(t, op.ID)
	if _, err := rs.ops.Cancel(ctx, op.ID, 1, "changed my mind"); err != nil {
		t.Fatal(err)
	}
	got := rs.waitOp(t, op.ID)
	if got.Status != storage.OperationCanceled {
		t.Fatalf("canceled restore ended %s: %s", got.Status, deref(got.Error))
	}
	waitFor(t, "result acknowledged on the agent", func() bool { return resultAckedOnAgent(rs.dataDir, op.ID) })
	kinds := rs.opEvents(t, op.ID)
	if count(kinds, "cancel_requested") != 1 || count(kinds, "canceled") != 1 || count(kinds, "complete") != 0 {
		t.Fatalf("events %v", kinds)
	}
	if n := restoreExecutions(t, rs.markers, op.ID); n != 1 {
		t.Fatalf("restore executed %d times", n)
	}
	if _, err := os.Stat(testtool.ArchivePath(into, src)); !os.IsNotExist(err) {
		t.Fatalf("a restore canceled before extracting wrote files: %v", err)
	}
}

// TestRestoreOnAgentSurvivesDrop: the connection drops while the agent restores; the restore
// goes on, runs once, and its result is recorded once after the agent reconnects.
func TestRestoreOnAgentSurvivesDrop(t *testing.T) {
	t.Parallel()
	rs := newRestoreSetup(t, true)
	src, _, _, runID := rs.backupNewTree(t, 1<<20, `{"type":"none"}`)
	into := filepath.Join(t.TempDir(), "restored")
	op := rs.restore(t, runID, into)
	rs.waitHeld(t, op.ID)
	rs.proxy.faultAll(faultDrop)
	waitFor(t, "agent reconnected", func() bool { return rs.proxy.linksOpened() >= 2 && rs.hub.Connected(rs.agentID) })
	// The re-sent restore reached the agent on the new connection and was not run again.
	waitFor(t, "re-send acknowledged", func() bool {
		tk, _ := rs.db.Reader().GetAgentTask(context.Background(), op.ID)
		return tk.SendCount >= 2
	})
	if err := os.WriteFile(filepath.Join(rs.markers, "release-"+op.ID), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := rs.waitOp(t, op.ID)
	if got.Status != storage.OperationSuccess {
		t.Fatalf("restore %s: %s", got.Status, deref(got.Error))
	}
	waitFor(t, "result acknowledged on the agent", func() bool { return resultAckedOnAgent(rs.dataDir, op.ID) })
	testtool.CompareTrees(t, src, testtool.ArchivePath(into, src), false)
	kinds := rs.opEvents(t, op.ID)
	if n := restoreExecutions(t, rs.markers, op.ID); n != 1 {
		t.Errorf("restore executed %d times", n)
	}
	if count(kinds, "complete") != 1 || count(kinds, "manifest") != 1 {
		t.Errorf("events %v: the result and each event must be recorded once", kinds)
	}
}

// TestRestoreOnAgentRefusals: a restore an agent cannot run is refused before anything starts.
func TestRestoreOnAgentRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := newRestoreSetup(t, false)
	_, _, _, runID := rs.backupNewTree(t, 1<<16, `{"type":"none"}`)
	req := func(dir string) operations.RestoreRequest {
		return operations.RestoreRequest{Destination: operations.Destination{Type: operations.DestinationLocalFS, NodeID: rs.agentID, Directory: dir}}
	}
	var ie *operations.InputError
	if _, err := rs.ops.StartRestore(ctx, runID, req("relative/dir"), 1); !errors.As(err, &ie) || ie.Code != "invalid_destination" {
		t.Fatalf("relative directory: %v", err)
	}
	rs.stopAgent(t)
	if _, err := rs.ops.StartRestore(ctx, runID, req(t.TempDir()), 1); !errors.As(err, &ie) || ie.Code != agentsock.CodeAgentNotConnected {
		t.Fatalf("offline agent: %v", err)
	}
	ops, _ := rs.db.Reader().ListOperationsBySubject(ctx, "run", runID, 10)
	if len(ops) != 0 {
		t.Fatalf("refused restores left operations: %v", ops)
	}
}

// TestRestoreOnAgentKilled: the agent dies (kill -9) in the middle of a restore and starts
// again. The restore is not run again; the operation fails with agent_interrupted, once.
func TestRestoreOnAgentKilled(t *testing.T) {
	t.Parallel()
	rs := newRestoreSetup(t, true)
	_, _, _, runID := rs.backupNewTree(t, 1<<16, `{"type":"none"}`)
	op := rs.restore(t, runID, filepath.Join(t.TempDir(), "restored"))
	rs.waitHeld(t, op.ID)
	rs.child.kill9()
	if err := os.WriteFile(filepath.Join(rs.markers, "release-"+op.ID), nil, 0o600); err != nil {
		t.Fatal(err) // a second execution would run through at once
	}
	rs.child = startRealChild(t, rs.proxy.url(), "", rs.dataDir, rs.markers, true)
	got := rs.waitOp(t, op.ID)
	if got.Status != storage.OperationFailed || !strings.HasPrefix(deref(got.Error), client.InterruptedCode) {
		t.Fatalf("restore interrupted by a crash: %s %s", got.Status, deref(got.Error))
	}
	waitFor(t, "result acknowledged on the agent", func() bool { return resultAckedOnAgent(rs.dataDir, op.ID) })
	if n := restoreExecutions(t, rs.markers, op.ID); n != 1 {
		t.Fatalf("restore executed %d times", n)
	}
	if kinds := rs.opEvents(t, op.ID); count(kinds, "failed") != 1 {
		t.Fatalf("events %v", kinds)
	}
	if es, _ := os.ReadDir(filepath.Join(rs.dataDir, "operations")); len(es) != 0 {
		t.Fatalf("scratch space of the interrupted restore left on the agent: %v", es)
	}
}

// TestRestoreOnAgentKeepsSpecialBitsOnlyWhenAsked: setuid/setgid bits are stripped by an agent's
// restore unless the restore request asked to keep them, which must travel to the agent.
func TestRestoreOnAgentKeepsSpecialBitsOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	rs := newRestoreSetup(t, false)
	src, dst := filepath.Join(t.TempDir(), "src"), t.TempDir()
	testtool.WriteFile(t, filepath.Join(src, "su"), []byte("#!/bin/sh\n"), 0o755, time.Now())
	if err := os.Chmod(filepath.Join(src, "su"), 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	_, runID := rs.backupOnAgent(t, src, dst, `{"type":"none"}`)
	for _, tc := range []struct {
		keep bool
		want os.FileMode
	}{{false, 0o755}, {true, 0o755 | os.ModeSetuid | os.ModeSetgid}} {
		into := filepath.Join(t.TempDir(), "restored")
		op, err := rs.ops.StartRestore(context.Background(), runID, operations.RestoreRequest{KeepSpecialBits: tc.keep,
			Destination: operations.Destination{Type: operations.DestinationLocalFS, NodeID: rs.agentID, Directory: into}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if op = rs.waitOp(t, op.ID); op.Status != storage.OperationSuccess {
			t.Fatalf("restore %s: %s", op.Status, deref(op.Error))
		}
		fi, err := os.Lstat(filepath.Join(testtool.ArchivePath(into, src), "su"))
		if err != nil || fi.Mode() != tc.want {
			t.Fatalf("keep_special_bits=%v: su restored as %v (%v), want %v", tc.keep, fi.Mode(), err, tc.want)
		}
	}
}
