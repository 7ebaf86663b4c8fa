package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/storage"
)

// seedConsoleRun makes a job with one run holding 10 events: seq 1..10, levels cycling
// info, info, warn, error (so 3, 7 are warn; 4, 8 error), kinds "progress" on even seqs, "log" on
// odd ones.
func seedConsoleRun(t *testing.T, jh *jobsHub) (jobID, runID string) {
	t.Helper()
	ctx := context.Background()
	jobID, runID = uuidN(7, 1), uuidN(7, 2)
	now := jh.Clock.Now().Unix()
	err := jh.DB.Write(ctx, func(q storage.Q) error {
		if err := q.InsertJob(ctx, storage.Job{ID: jobID, Name: "console", ScheduleTimezone: "UTC", OverlapPolicy: "queue",
			MissedRunPolicy: "skip", SpecJSON: fsSpec, CreatedAt: now, UpdatedAt: now}); err != nil {
			return err
		}
		if err := q.InsertRun(ctx, storage.Run{ID: uuidN(7, 9), JobID: jobID, Status: storage.RunSuccess, StartedAt: now - 100}); err != nil {
			return err
		}
		if err := q.InsertRun(ctx, storage.Run{ID: runID, JobID: jobID, Status: storage.RunFailed, StartedAt: now}); err != nil {
			return err
		}
		var evs []storage.RunEvent
		for i := 1; i <= 10; i++ {
			level := []string{"info", "info", "warn", "error"}[(i-1)%4]
			kind := "log"
			if i%2 == 0 {
				kind = "progress"
			}
			evs = append(evs, storage.RunEvent{RunID: runID, TS: now + int64(i), Level: level, Kind: kind, Message: fmt.Sprintf("event %d", i)})
		}
		return q.AppendRunEvents(ctx, evs)
	})
	if err != nil {
		t.Fatal(err)
	}
	return jobID, runID
}

func consoleSeqs(t *testing.T, body map[string]any) []float64 {
	t.Helper()
	var out []float64
	for _, e := range body["events"].([]any) {
		out = append(out, e.(map[string]any)["seq"].(float64))
	}
	return out
}

func TestRunEventConsole(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	_, runID := seedConsoleRun(t, jh)
	get := func(query string) map[string]any {
		t.Helper()
		resp := jh.c.Do(t, "GET", "/api/runs/"+runID+"/event-console"+query, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("GET event-console%s: %s", query, resp)
		}
		return resp.JSON(t)
	}
	cases := []struct {
		name, query      string
		seqs             []float64
		hasOlder, hasNew bool
	}{
		{"NewestPage", "?limit=3", []float64{8, 9, 10}, true, false},
		{"Before", "?limit=3&before_seq=8", []float64{5, 6, 7}, true, true},
		{"BeforeFirstPage", "?limit=3&before_seq=3", []float64{1, 2}, false, true},
		{"After", "?limit=3&after_seq=2", []float64{3, 4, 5}, true, true},
		{"AfterToEnd", "?limit=3&after_seq=8", []float64{9, 10}, true, false},
		{"AfterEnd", "?after_seq=10", nil, true, false},
		{"Level", "?levels=warn,error", []float64{3, 4, 7, 8}, false, false},
		{"LevelRepeated", "?level=warn&level=error&limit=2", []float64{7, 8}, true, false},
		{"LevelAndKind", "?levels=error&kinds=progress", []float64{4, 8}, false, false},
		{"KindBefore", "?kind=log&before_seq=5&limit=1", []float64{3}, true, true},
		{"NoMatch", "?levels=debug", nil, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := get(c.query)
			if got := consoleSeqs(t, body); fmt.Sprint(got) != fmt.Sprint(c.seqs) {
				t.Fatalf("seqs = %v, want %v", got, c.seqs)
			}
			if body["has_older"] != c.hasOlder || body["has_newer"] != c.hasNew {
				t.Fatalf("has_older %v has_newer %v, want %v %v", body["has_older"], body["has_newer"], c.hasOlder, c.hasNew)
			}
		})
	}
	body := get("?levels=error")
	sum := body["summary"].(map[string]any)
	if sum["total"] != 10.0 || sum["max_seq"] != 10.0 || fmt.Sprint(sum["kinds"]) != "[log progress]" ||
		fmt.Sprint(sum["by_level"]) != "map[error:2 info:6 warn:2]" {
		t.Fatalf("summary = %v", sum)
	}
	if body["first_seq"] != 4.0 || body["last_seq"] != 8.0 || fmt.Sprint(body["filters"]) != "map[kinds:[] levels:[error] q:]" {
		t.Fatalf("window = %v", body)
	}
	ev := body["events"].([]any)[0].(map[string]any)
	for _, k := range []string{"run_id", "seq", "ts", "level", "kind", "message", "fields"} {
		if _, ok := ev[k]; !ok {
			t.Fatalf("event lacks %s: %v", k, ev)
		}
	}

	for _, bad := range []struct{ query, code string }{
		{"?limit=0", "invalid_limit"}, {"?limit=501", "invalid_limit"}, {"?limit=x", "invalid_limit"},
		{"?before_seq=0", "invalid_cursor"}, {"?after_seq=-1", "invalid_cursor"},
		{"?before_seq=3&after_seq=1", "invalid_cursor"},
		{"?limit=99999999999999999999", "invalid_limit"}, {"?limit=-5", "invalid_limit"},
		{"?before_seq=abc", "invalid_cursor"}, {"?after_seq=1e3", "invalid_cursor"},
		{"?before_seq=99999999999999999999", "invalid_cursor"},
		{"?levels=" + manyValues(33), "invalid_filter"},
		{"?kinds=" + manyValues(50000), "invalid_filter"},
		{"?kind=" + strings.Repeat("a&kind=b&kind=", 10) + manyValues(32), "invalid_filter"},
	} {
		resp := jh.c.Do(t, "GET", "/api/runs/"+runID+"/event-console"+bad.query, nil)
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != bad.code {
			t.Errorf("%s: %s, want 400 %s", bad.query, resp, bad.code)
		}
	}
	if resp := jh.c.Do(t, "GET", "/api/runs/"+uuidN(9, 9)+"/event-console", nil); resp.Status != http.StatusNotFound || resp.ErrorCode() != "run_not_found" {
		t.Fatalf("missing run: %s", resp)
	}
}

func TestRunAndJobWorkspace(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	jobID, runID := seedConsoleRun(t, jh)

	resp := jh.c.Do(t, "GET", "/api/runs/"+runID+"/workspace", nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("run workspace: %s", resp)
	}
	body := resp.JSON(t)
	run := body["run"].(map[string]any)
	job := body["job"].(map[string]any)
	if run["id"] != runID || run["status"] != "failed" || job["id"] != jobID || job["spec"] == nil {
		t.Fatalf("run workspace = %v", body)
	}
	if recent := body["recent_runs"].([]any); len(recent) != 2 || recent[0].(map[string]any)["id"] != runID {
		t.Fatalf("recent_runs = %v", recent)
	}
	if ev := body["events"].(map[string]any); ev["total"] != 10.0 || ev["max_seq"] != 10.0 {
		t.Fatalf("events = %v", ev)
	}

	resp = jh.c.Do(t, "GET", "/api/jobs/"+jobID+"/workspace", nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("job workspace: %s", resp)
	}
	body = resp.JSON(t)
	if j := body["job"].(map[string]any); j["id"] != jobID || j["latest_run_id"] != runID || j["latest_run_status"] != "failed" {
		t.Fatalf("job = %v", j)
	}
	if runs := body["runs"].([]any); len(runs) != 2 {
		t.Fatalf("runs = %v", runs)
	}
	if ev := body["latest_run_events"].(map[string]any); ev["total"] != 10.0 {
		t.Fatalf("latest_run_events = %v", ev)
	}
	if w := fmt.Sprint(body["warnings"]); w != "[latest_run_failed manual_only no_schedule]" { // it succeeded once before
		t.Fatalf("warnings = %s", w)
	}

	// A job that never ran: no latest run events, no failure warning.
	jobs := jh.c.Do(t, "POST", "/api/jobs", jobBody(nil)).JSON(t)
	body = jh.c.Do(t, "GET", "/api/jobs/"+jobs["id"].(string)+"/workspace", nil).JSON(t)
	if body["latest_run_events"] != nil || fmt.Sprint(body["warnings"]) != "[]" || len(body["runs"].([]any)) != 0 {
		t.Fatalf("fresh job workspace = %v", body)
	}

	for _, path := range []string{"/api/runs/" + uuidN(9, 9) + "/workspace", "/api/jobs/" + uuidN(9, 9) + "/workspace"} {
		if resp := jh.c.Do(t, "GET", path, nil); resp.Status != http.StatusNotFound {
			t.Fatalf("%s: %s", path, resp)
		}
	}
}

// TestConsoleAndWorkspaceViewer: a viewer reads all three.
func TestConsoleAndWorkspaceViewer(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	jobID, runID := seedConsoleRun(t, jh)
	viewer := jh.AddUser(t, jh.c, "watcher", "viewer")
	for _, path := range []string{"/api/runs/" + runID + "/event-console", "/api/runs/" + runID + "/workspace", "/api/jobs/" + jobID + "/workspace"} {
		if resp := viewer.Do(t, "GET", path, nil); resp.Status != http.StatusOK {
			t.Fatalf("viewer %s: %s", path, resp)
		}
	}
}

// manyValues is a comma list of n distinct filter values.
func manyValues(n int) string {
	vals := make([]string, n)
	for i := range vals {
		vals[i] = "v" + strconv.Itoa(i)
	}
	return strings.Join(vals, ",")
}
