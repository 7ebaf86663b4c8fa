package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/bastion-backup/bastion/storage"
)

func TestListRunsAcrossJobs(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	ctx := context.Background()
	jobA, jobB := uuidN(1, 1), uuidN(1, 2)
	bh.insertJob(t, jobA, fsSpec)
	bh.insertJob(t, jobB, fsSpec)
	summary := `{"filesystem":{"warnings_total":2,"errors_total":1,"consistency":{"v":2,"changed_total":3,"replaced_total":1,"deleted_total":1,"read_error_total":1,"sample":[]}}}`
	// Runs 1..5 of A start at 100..500; B's run starts at 300 too (the id breaks the tie).
	err := bh.DB.Write(ctx, func(q storage.Q) error {
		for i := 1; i <= 5; i++ {
			r := storage.Run{ID: uuidN(2, i), JobID: jobA, Status: storage.RunSuccess, StartedAt: int64(i * 100)}
			if i == 5 {
				r.SummaryJSON = &summary
			}
			if i == 4 {
				bad := `{"filesystem":{"consistency":"unavailable","warnings_total":"x"}}`
				r.Status, r.SummaryJSON = storage.RunFailed, &bad
			}
			if err := q.InsertRun(ctx, r); err != nil {
				return err
			}
		}
		if _, err := q.Exec(ctx, `INSERT INTO agents(id, name, key_hash, created_at, updated_at) VALUES ('ag1', 'nas', x'01', 1, 1)`); err != nil {
			return err
		}
		if _, err := q.Exec(ctx, `UPDATE jobs SET agent_id = 'ag1' WHERE id = ?`, jobB); err != nil {
			return err
		}
		return q.InsertRun(ctx, storage.Run{ID: uuidN(3, 1), JobID: jobB, Status: storage.RunFailed, StartedAt: 300})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bh.DB.Writer().Exec(ctx, `UPDATE runs SET ingested_at = 1 WHERE id = ?`, uuidN(3, 1)); err != nil {
		t.Fatal(err)
	}

	ids := func(query string) ([]string, string) {
		t.Helper()
		resp := bh.c.Do(t, "GET", "/api/runs"+query, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("GET /api/runs%s: %s", query, resp)
		}
		body := resp.JSON(t)
		var out []string
		for _, it := range items(t, body) {
			out = append(out, it["id"].(string))
		}
		next, _ := body["next_cursor"].(string)
		return out, next
	}
	all, next := ids("")
	want := []string{uuidN(2, 5), uuidN(2, 4), uuidN(3, 1), uuidN(2, 3), uuidN(2, 2), uuidN(2, 1)}
	if !equal(all, want) || next != "" {
		t.Fatalf("all runs = %v next %q, want %v", all, next, want)
	}

	// The items: the job's run list fields, the job and node, and the digest of the summary.
	body := bh.c.Do(t, "GET", "/api/runs?limit=3", nil).JSON(t)
	got := items(t, body)
	first, bad, agentRun := got[0], got[1], got[2]
	if first["job_id"] != jobA || first["job_name"] != "job 00000001" || first["node_id"] != "hub" || first["executed_offline"] != false ||
		first["status"] != "success" || first["started_at"] != 500.0 || first["issues_warnings_total"] != 2.0 || first["issues_errors_total"] != 1.0 ||
		first["consistency_total"] != 6.0 || first["consistency_signal_total"] != 3.0 {
		t.Errorf("first item = %v", first)
	}
	if bad["consistency_total"] != nil || bad["issues_warnings_total"] != nil {
		t.Errorf("a summary of an unexpected shape counts as saying nothing: %v", bad)
	}
	if agentRun["node_id"] != "ag1" || agentRun["executed_offline"] != true || agentRun["job_id"] != jobB {
		t.Errorf("agent run = %v", agentRun)
	}

	// Paging by two walks every run once, ties included.
	var walked []string
	cursor := ""
	for range 10 {
		q := "?limit=2"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		page, next := ids(q)
		walked = append(walked, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if !equal(walked, want) {
		t.Fatalf("paged = %v, want %v", walked, want)
	}

	for query, w := range map[string][]string{
		"?status=failed":                   {uuidN(2, 4), uuidN(3, 1)},
		"?status=failed,%20success&to=300": {uuidN(2, 2), uuidN(2, 1)},
		"?job_id=" + jobB:                  {uuidN(3, 1)},
		"?node_id=hub&from=300&to=500":     {uuidN(2, 4), uuidN(2, 3)},
		"?node_id=ag1":                     {uuidN(3, 1)},
		"?node_id=nobody":                  nil,
	} {
		if got, _ := ids(query); !equal(got, w) {
			t.Errorf("%s: %v, want %v", query, got, w)
		}
	}

	for query, code := range map[string]string{
		"?state=failed":          "invalid_query",
		"?status=done":           "invalid_status",
		"?from=yesterday":        "invalid_from",
		"?to=-1":                 "invalid_to",
		"?limit=many":            "invalid_limit",
		"?cursor=***":            "invalid_cursor",
		"?cursor=bm9wZQ":         "invalid_cursor",
		"?scope=agent:":          "invalid_scope",
		"?scope=agent:%20":       "invalid_scope",
		"?scope=node":            "invalid_scope",
		"?scope=hub&node_id=ag1": "invalid_query",
		"?range=1y":              "invalid_range",
		"?range=24h&from=1":      "invalid_query",
		"?kind=reboot":           "invalid_kind",
	} {
		if resp := bh.c.Do(t, "GET", "/api/runs"+query, nil); resp.Status != http.StatusBadRequest || resp.ErrorCode() != code {
			t.Errorf("%s: %s, want 400 %s", query, resp, code)
		}
	}
	if resp := bh.Client(t).Do(t, "GET", "/api/runs", nil); resp.Status != http.StatusUnauthorized {
		t.Errorf("anonymous: %s", resp)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A job's own run list carries the original's two summary flags (issue 13): how many files
// changed while they were read, and whether an agent ran it offline.
func TestJobRunsCarryOriginalFlags(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	job := jh.create(t, nil)["id"].(string)
	ctx := context.Background()
	summary := `{"filesystem":{"consistency":{"v":2,"changed_total":3,"replaced_total":1,"deleted_total":1,"read_error_total":1,"sample":[]}}}`
	if err := jh.DB.Write(ctx, func(q storage.Q) error {
		if err := q.InsertRun(ctx, storage.Run{ID: uuidN(2, 1), JobID: job, Status: storage.RunSuccess, StartedAt: 100, SummaryJSON: &summary}); err != nil {
			return err
		}
		return q.InsertRun(ctx, storage.Run{ID: uuidN(2, 2), JobID: job, Status: storage.RunFailed, StartedAt: 200})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := jh.DB.Writer().Exec(ctx, `UPDATE runs SET ingested_at = 1 WHERE id = ?`, uuidN(2, 2)); err != nil {
		t.Fatal(err)
	}
	resp := jh.c.Do(t, "GET", "/api/jobs/"+job+"/runs", nil)
	var runs []struct {
		ID                      string
		ExecutedOffline         bool  `json:"executed_offline"`
		ConsistencyChangedTotal int64 `json:"consistency_changed_total"`
	}
	resp.Decode(t, &runs)
	if resp.Status != http.StatusOK || len(runs) != 2 || runs[0].ID != uuidN(2, 2) || !runs[0].ExecutedOffline ||
		runs[0].ConsistencyChangedTotal != 0 || runs[1].ExecutedOffline || runs[1].ConsistencyChangedTotal != 6 {
		t.Fatalf("runs = %s", resp)
	}
}
