package storage_test

import (
	"context"
	"testing"

	"github.com/bastion-backup/bastion/storage/storagetest"
)

// AgentCounts must agree with the fleet-wide counts it stands in for on the one-agent page.
func TestAgentCountsMatchFleetCounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.Open(t)
	w := db.Writer()
	for _, a := range []string{"a1", "a2", "idle"} {
		mustExec(t, w, `INSERT INTO agents(id, key_hash, created_at, updated_at) VALUES (?, CAST(? AS BLOB), 1, 1)`, a, a)
	}
	for _, j := range []struct{ id, agent string }{{"j1", "a1"}, {"j2", "a1"}, {"j3", "a2"}} {
		mustExec(t, w, `INSERT INTO jobs(id, name, agent_id, spec_json, created_at, updated_at) VALUES (?, 'j', ?, '{}', 1, 1)`, j.id, j.agent)
	}
	mustExec(t, w, `INSERT INTO jobs(id, name, agent_id, spec_json, archived_at, created_at, updated_at) VALUES ('gone', 'j', 'a1', '{}', 5, 1, 1)`)
	mustExec(t, w, `INSERT INTO agent_tasks(id, agent_id, run_id, status, payload_json, created_at, updated_at) VALUES ('t1','a1','r1','acked','{}',1,1)`)
	mustExec(t, w, `INSERT INTO agent_tasks(id, agent_id, run_id, status, payload_json, created_at, updated_at) VALUES ('t2','a2','r2','queued','{}',1,1)`)
	mustExec(t, w, `INSERT INTO agent_tasks(id, agent_id, run_id, status, payload_json, completed_at, created_at, updated_at) VALUES ('t3','a2','r3','completed','{}',2,1,1)`)

	all, err := w.AgentFleetCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if all["a1"].Jobs != 2 || all["a1"].OpenTasks != 1 || all["a2"].Jobs != 1 || all["a2"].OpenTasks != 1 {
		t.Fatalf("fleet counts = %+v", all)
	}
	for _, id := range []string{"a1", "a2", "idle", "nobody"} {
		got, err := w.AgentCounts(ctx, id)
		if err != nil || got != all[id] {
			t.Errorf("AgentCounts(%s) = %+v, %v; want %+v", id, got, err, all[id])
		}
	}
}
