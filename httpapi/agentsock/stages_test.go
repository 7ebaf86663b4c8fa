package agentsock_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestStageEventsOnce: each stage of an agent run is logged once. An agent whose hello says it
// sends its stage events (the Go agent forwards its pipeline's) gets none added by the Hub; for an
// agent that does not, the Hub adds one when the run's progress enters a stage.
func TestStageEventsOnce(t *testing.T) {
	t.Parallel()
	for _, own := range []bool{true, false} {
		t.Run(fmt.Sprintf("AgentSendsStages=%v", own), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := storagetest.Open(t)
			bridge := agentsock.NewRunBridge()
			th := newTestHub(t, hubOpts{db: db, bridge: bridge})
			svc := runs.New(runs.Config{DB: db, Clock: clock.Real{}, Log: zerolog.New(zerolog.NewTestWriter(t)), Agents: bridge})
			bridge.Attach(th.hub, svc)
			runLoop(t, svc.Run)

			agent := "raw"
			ws := dialAgent(t, th.url, insertAgentKey(t, db, agent))
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
			send(&protocol.Hello{AgentID: agent, StageEvents: own})
			if err := db.Writer().InsertJob(ctx, storage.Job{ID: "j", Name: "j", AgentID: &agent, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
				MissedRunPolicy: "run_once", SpecJSON: `{"v":1,"type":"filesystem","source":{"paths":["/srv"]},"target":{"type":"local_dir","base_dir":"/bk"}}`,
				CreatedAt: 1, UpdatedAt: 1}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "agent connected", func() bool { return th.hub.Connected(agent) })
			r, err := svc.Trigger(ctx, "j", runs.SourceManual)
			if err != nil {
				t.Fatal(err)
			}
			task := readUntil(t, ws, protocol.TypeTask).(*protocol.Task)
			send(&protocol.Ack{TaskID: task.TaskID})
			seq := int64(0)
			event := func(kind, msg string, fields string) {
				seq++
				s := seq
				ev := &protocol.RunEvent{RunID: r.ID, Seq: &s, Level: "info", Kind: kind, Message: msg}
				if fields != "" {
					ev.Fields = json.RawMessage(fields)
				}
				send(ev)
			}
			for _, stage := range []string{"packaging", "upload"} {
				if own { // as engine/backup logs it
					event(stage, stage+" started", "")
				}
				event("progress_snapshot", stage, `{"v":1,"kind":"backup","stage":"`+stage+`","ts":1,"done":{"files":0,"dirs":0,"bytes":0}}`)
				event("progress_snapshot", stage, `{"v":1,"kind":"backup","stage":"`+stage+`","ts":2,"done":{"files":1,"dirs":0,"bytes":5}}`)
			}
			send(&protocol.TaskResult{TaskID: task.TaskID, RunID: r.ID, Status: protocol.StatusSuccess})
			waitFor(t, "run finished", func() bool {
				got, _ := db.Reader().GetRun(ctx, r.ID)
				return got.Status == storage.RunSuccess
			})
			evs, err := db.Reader().ListRunEvents(ctx, r.ID, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			count := map[string]int{}
			for _, e := range evs {
				count[e.Kind]++
			}
			if count["packaging"] != 1 || count["upload"] != 1 {
				t.Fatalf("stage events %v in %d events, want packaging and upload once each", count, len(evs))
			}
		})
	}
}
