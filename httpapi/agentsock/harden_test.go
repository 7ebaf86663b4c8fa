package agentsock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestIngestRefusesHostileValues: an offline upload with sizes that would overflow the Hub's
// sums, times far in the future (by the Hub's clock) or before 1970, an oversized summary, or
// events outside the shared bounds is refused whole with 400 and stores nothing.
func TestIngestRefusesHostileValues(t *testing.T) {
	t.Parallel()
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	th := newTestHub(t, hubOpts{clock: fake})
	b := setupIngestOn(t, th)
	now := fake.Now().Unix()
	metrics := func(m map[string]any) map[string]any { return map[string]any{"metrics": m} }
	ev := func(e map[string]any) []map[string]any {
		base := map[string]any{"seq": 1, "ts": now - 5, "level": "info", "kind": "complete", "message": "m"}
		for k, v := range e {
			base[k] = v
		}
		return []map[string]any{base}
	}
	for name, c := range map[string]struct {
		fields map[string]any
		code   string
	}{
		"NegativeTransfer":  {map[string]any{"summary": metrics(map[string]any{"transfer_total_bytes": -1})}, "invalid_run"},
		"HugeTransfer":      {map[string]any{"summary": metrics(map[string]any{"transfer_total_bytes": int64(1) << 60})}, "invalid_run"},
		"HugeSourceBytes":   {map[string]any{"summary": metrics(map[string]any{"source_total": map[string]uint64{"bytes": 1 << 63}})}, "invalid_run"},
		"FarFutureEnd":      {map[string]any{"ended_at": now + 3600}, "invalid_run"},
		"NegativeStart":     {map[string]any{"started_at": -5}, "invalid_run"},
		"HugeSummary":       {map[string]any{"summary": map[string]string{"pad": strings.Repeat("x", 65<<10)}}, "invalid_run"},
		"FutureEventTime":   {map[string]any{"events": ev(map[string]any{"ts": now + 3600})}, "invalid_event"},
		"UnknownLevel":      {map[string]any{"events": ev(map[string]any{"level": "critical"})}, "invalid_event"},
		"LongKind":          {map[string]any{"events": ev(map[string]any{"kind": strings.Repeat("k", 65)})}, "invalid_event"},
		"ControlInKind":     {map[string]any{"events": ev(map[string]any{"kind": "a\nb"})}, "invalid_event"},
		"FieldsNotAnObject": {map[string]any{"events": ev(map[string]any{"fields": "text"})}, "invalid_event"},
		"LongError":         {map[string]any{"status": "failed", "error": strings.Repeat("e", 5000)}, "invalid_run"},
		"ErrorCodeNotACode": {map[string]any{"status": "failed", "summary": map[string]any{"error_code": "Bad Code\n"}}, "invalid_run"},
		"ErrorCodeNotText":  {map[string]any{"status": "failed", "summary": map[string]any{"error_code": 7}}, "invalid_run"},
	} {
		t.Run(name, func(t *testing.T) {
			f := map[string]any{"id": "bad-" + strings.ToLower(name), "started_at": now - 10, "ended_at": now - 5}
			for k, v := range c.fields {
				f[k] = v
			}
			if code, e := b.upload(t, f); code != http.StatusBadRequest || e != c.code {
				t.Fatalf("upload: %d %s, want 400 %s", code, e, c.code)
			}
			if _, err := th.db.Reader().GetRun(context.Background(), f["id"].(string)); err == nil {
				t.Fatal("a refused upload stored its run")
			}
		})
	}
	// A clock a little ahead of the Hub's is fine; sizes up to 2^53 are kept.
	sum := metrics(map[string]any{"transfer_total_bytes": int64(1) << 53})
	if code, e := b.upload(t, map[string]any{"id": "skewed", "started_at": now, "ended_at": now + 60, "summary": sum,
		"events": ev(map[string]any{"ts": now + 60})}); code != http.StatusNoContent {
		t.Fatalf("upload from a slightly fast clock: %d %s", code, e)
	}
}

// TestSocketBoundsWhatAgentsReport: on the live socket, events outside the shared bounds are
// dropped, an oversized summary is not kept, the task row does not keep a second copy of the
// summary, and a config_ack with an id the Hub never issues is not stored.
func TestSocketBoundsWhatAgentsReport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	th := newTestHub(t, hubOpts{})
	key := insertAgentKey(t, th.db, "a1")
	th.dispatch(t, "a1", "t1")
	ws := dialAgent(t, th.url, key)
	readUntil(t, ws, protocol.TypeTask)
	send := func(m protocol.Message) {
		t.Helper()
		b, err := protocol.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	send(&protocol.Hello{}) // lifts the read limit from the hello's
	send(&protocol.ConfigAck{SnapshotID: strings.Repeat("s", 100<<10)})
	for _, ev := range []protocol.RunEvent{
		{Level: "critical", Kind: "start", Message: "bad level"},
		{Level: "info", Kind: strings.Repeat("k", 1000), Message: "long kind"},
		{Level: "info", Kind: "start", Message: strings.Repeat("m", 5000)},
		{Level: "info", Kind: "start", Message: "ok"},
	} {
		ev.RunID = "t1"
		send(&ev)
	}
	errText := strings.Repeat("e", 100<<10)
	send(&protocol.TaskResult{TaskID: "t1", RunID: "t1", Status: protocol.StatusFailed, Error: &errText,
		Summary: json.RawMessage(`{"pad":"` + strings.Repeat("x", 100<<10) + `"}`)})
	readUntil(t, ws, protocol.TypeTaskResultAck)

	if got := th.sink.eventsOf("t1"); len(got) != 1 || got[0] != "start:ok" {
		t.Fatalf("events recorded: %d, want only the valid one", len(got))
	}
	res, _, _ := th.sink.result("t1")
	if len(res.Summary) != 0 || res.Error == nil || len(*res.Error) > agentsock.MaxEventMessage {
		t.Fatalf("result kept %d summary bytes and %d error bytes", len(res.Summary), len(*res.Error))
	}
	if tk := th.task(t, "t1"); tk.ResultJSON == nil || len(*tk.ResultJSON) > 100 || (tk.Error != nil && len(*tk.Error) > agentsock.MaxEventMessage) {
		t.Fatalf("task row keeps %d result bytes", len(*tk.ResultJSON))
	}
	if a, err := th.db.Reader().GetAgent(ctx, "a1"); err != nil || a.AppliedConfigSnapshotID != nil {
		t.Fatalf("config_ack with an invalid id stored: %v", err)
	}
}

// TestIngestRunBelongsToTheAgentThatUploadedIt: once a job moves to another agent, that agent
// cannot rewrite a run the first one uploaded (409 run_conflict, nothing changed), and a repeated
// upload by the first agent never moves the snapshot it recorded.
func TestIngestRunBelongsToTheAgentThatUploadedIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupIngest(t, "")
	at := func(id string) string {
		t.Helper()
		a, err := b.th.db.Reader().GetRunArtifact(ctx, "j1", id)
		if err != nil {
			t.Fatal(err)
		}
		return a.TargetSnapshotJSON
	}
	if code, e := b.upload(t, map[string]any{"id": "r1", "target": map[string]string{"type": "local_dir", "base_dir": "/then"}}); code != 204 {
		t.Fatalf("first upload: %d %s", code, e)
	}
	first := at("r1")
	if code, e := b.upload(t, map[string]any{"id": "r1", "target": map[string]string{"type": "local_dir", "base_dir": "/elsewhere"}}); code != 204 {
		t.Fatalf("repeated upload: %d %s", code, e)
	}
	if got := at("r1"); got != first {
		t.Fatalf("a repeated upload moved the snapshot from %s to %s", first, got)
	}
	if r := b.run(t, "r1"); r.TargetSnapshotJSON == nil || *r.TargetSnapshotJSON != first {
		t.Fatalf("a repeated upload moved the run's target to %v", r.TargetSnapshotJSON)
	}

	key2 := insertAgentKey(t, b.th.db, "a2")
	if _, err := b.th.db.Writer().Exec(ctx, `UPDATE jobs SET agent_id = 'a2' WHERE id = 'j1'`); err != nil {
		t.Fatal(err)
	}
	before := b.run(t, "r1")
	code, e := postIngest(t, b.th.url, key2, map[string]any{"run": map[string]any{"id": "r1", "job_id": "j1", "status": "failed",
		"started_at": 1, "ended_at": 2, "error": "rewritten", "target": map[string]string{"type": "local_dir", "base_dir": "/evil"}}})
	if code != http.StatusConflict || e != "run_conflict" {
		t.Fatalf("upload by another agent: %d %s", code, e)
	}
	if after := b.run(t, "r1"); after.Status != before.Status || after.StartedAt != before.StartedAt || after.Error != nil {
		t.Fatalf("run rewritten by another agent: %+v", after)
	}
	if got := at("r1"); got != first {
		t.Fatalf("snapshot moved by another agent to %s", got)
	}
	if code, e := postIngest(t, b.th.url, key2, map[string]any{"run": map[string]any{"id": "r2", "job_id": "j1", "status": "success",
		"started_at": 1, "ended_at": 2}}); code != 204 {
		t.Fatalf("the new agent's own run: %d %s", code, e)
	}
}

// agentHoldsKey reports whether the agent process's own secret store holds the age key name.
func agentHoldsKey(t *testing.T, rs *restoreSetup, name string) bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(rs.dataDir, "agent", "managed", "secrets.json"))
	return err == nil && bytes.Contains(raw, []byte(name))
}

// TestSharedAgeKeyLivesOnlyAsLongAsItsOperation: an encrypted snapshot's age key is on the agent
// while its restore runs, and gone from the Hub's record of the agent's scope and from the agent
// once the restore is canceled.
func TestSharedAgeKeyLivesOnlyAsLongAsItsOperation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := newRestoreSetup(t, true)
	_, _, _, runID := rs.backupNewTree(t, 1<<20, `{"type":"age_x25519","key_name":"op-key"}`)
	op := rs.restore(t, runID, filepath.Join(t.TempDir(), "restored"))
	rs.waitHeld(t, op.ID)
	if shared, err := rs.store.List(ctx, rs.agentID, secrets.KindBackupAgeIdentity); err != nil || len(shared) != 1 || shared[0].Name != "op-key" {
		t.Fatalf("age keys in the agent's scope while it restores: %v %v", shared, err)
	}
	if !agentHoldsKey(t, rs, "op-key") {
		t.Fatal("the agent does not hold the key while it restores")
	}
	if _, err := rs.ops.Cancel(ctx, op.ID, 1, "changed my mind"); err != nil {
		t.Fatal(err)
	}
	if got := rs.waitOp(t, op.ID); got.Status != storage.OperationCanceled {
		t.Fatalf("restore ended %s", got.Status)
	}
	waitFor(t, "key removed from the agent's scope", func() bool {
		shared, err := rs.store.List(ctx, rs.agentID, secrets.KindBackupAgeIdentity)
		return err == nil && len(shared) == 0
	})
	waitFor(t, "the agent forgot the key", func() bool { return !agentHoldsKey(t, rs, "op-key") })
}

// TestUploadedRunCannotClaimAnotherAgeKey: the summary of a run an agent uploaded is the agent's
// word; naming an age key its job does not use must not get that key copied to the agent when the
// run is restored there. The same summary written by the Hub itself does get its key shared,
// which shows the test sees a shared key.
func TestUploadedRunCannotClaimAnotherAgeKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := newRestoreSetup(t, true)
	_, _, _, runID := rs.backupNewTree(t, 1<<20, `{"type":"none"}`)
	if err := rs.store.Put(ctx, "hub", secrets.KindBackupAgeIdentity, "victim-key", []byte("AGE-SECRET-KEY-1VICTIM")); err != nil {
		t.Fatal(err)
	}
	// As if uploaded: no backup task of the Hub's, and a summary naming the victim's key.
	for _, q := range []string{`DELETE FROM agent_tasks WHERE id = ?`,
		`UPDATE runs SET ingested_at = 1, summary_json = json_set(COALESCE(summary_json, '{}'), '$.encryption_key', 'victim-key') WHERE id = ?`} {
		if _, err := rs.db.Writer().Exec(ctx, q, runID); err != nil {
			t.Fatal(err)
		}
	}
	sharedWhileHeld := func() []secrets.Meta {
		t.Helper()
		op := rs.restore(t, runID, filepath.Join(t.TempDir(), "restored"))
		rs.waitHeld(t, op.ID)
		shared, err := rs.store.List(ctx, rs.agentID, secrets.KindBackupAgeIdentity)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rs.ops.Cancel(ctx, op.ID, 1, "done looking"); err != nil {
			t.Fatal(err)
		}
		rs.waitOp(t, op.ID)
		return shared
	}
	if shared := sharedWhileHeld(); len(shared) != 0 || agentHoldsKey(t, rs, "victim-key") {
		t.Fatalf("an uploaded summary got the agent age keys %v", shared)
	}
	if _, err := rs.db.Writer().Exec(ctx, `UPDATE runs SET ingested_at = NULL WHERE id = ?`, runID); err != nil {
		t.Fatal(err)
	}
	if shared := sharedWhileHeld(); len(shared) != 1 || shared[0].Name != "victim-key" {
		t.Fatalf("the Hub's own summary: age keys shared %v", shared)
	}
}

// TestStaleAgeKeysLeaveAtHello: a key left in an agent's scope by an operation that ended while
// the Hub was down (or the agent away) is removed when the agent says hello again.
func TestStaleAgeKeysLeaveAtHello(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := newRestoreSetup(t, false)
	if err := rs.store.Put(ctx, rs.agentID, secrets.KindBackupAgeIdentity, "stale-key", []byte("AGE-SECRET-KEY-1STALE")); err != nil {
		t.Fatal(err)
	}
	if err := rs.hub.PushSecrets(ctx, rs.agentID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent holds the stale key", func() bool { return agentHoldsKey(t, rs, "stale-key") })
	rs.proxy.faultAll(faultDrop)
	waitFor(t, "agent reconnected", func() bool { return rs.proxy.linksOpened() >= 2 && rs.hub.Connected(rs.agentID) })
	waitFor(t, "stale key removed from the agent's scope", func() bool {
		shared, err := rs.store.List(ctx, rs.agentID, secrets.KindBackupAgeIdentity)
		return err == nil && len(shared) == 0
	})
	waitFor(t, "the agent forgot the stale key", func() bool { return !agentHoldsKey(t, rs, "stale-key") })
}

// TestRefusedResultsAreLoggedSparingly: an agent sending results for another agent's task, over
// and over, gets a bounded number of warnings in the Hub's log, and changes nothing.
func TestRefusedResultsAreLoggedSparingly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	logs := &syncWriter{w: &bytes.Buffer{}}
	th := serveTestHub(t, agentsock.New(agentsock.Config{DB: db, Clock: clock.Real{}, Logger: zerolog.New(logs), Sink: newSink()}), db)
	insertAgentKey(t, db, "owner")
	key := insertAgentKey(t, db, "intruder")
	th.dispatch(t, "owner", "t1")
	ws := dialAgent(t, th.url, key)
	send := func(m protocol.Message) {
		t.Helper()
		b, _ := protocol.Encode(m)
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	send(&protocol.Hello{})
	for range 200 {
		send(&protocol.TaskResult{TaskID: "t1", RunID: "t1", Status: protocol.StatusSuccess})
	}
	// Frames are handled in order: once this one is applied, all the results before it were.
	send(&protocol.ConfigAck{SnapshotID: "done"})
	waitFor(t, "config_ack applied", func() bool {
		a, err := db.Reader().GetAgent(ctx, "intruder")
		return err == nil && a.AppliedConfigSnapshotID != nil
	})
	if n := strings.Count(logs.String(), "does not own the task"); n == 0 || n > 20 {
		t.Fatalf("%d warnings for 200 refused results, want between 1 and 20", n)
	}
	if tk := th.task(t, "t1"); tk.CompletedAt != nil {
		t.Fatal("a foreign result completed the task")
	}
}
