package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/httpapi/metrics"
	"github.com/bastion-backup/bastion/storage"
)

// metricsHub is a Hub API on a database file that outlives it, so that a test can stop it and
// start another on the same file (a restart).
type metricsHub struct {
	*apitest.Hub
	runs *runs.Service
	stop func()
}

func startMetricsHub(t *testing.T, path string, clk *clock.Fake, configure func(*httpapi.Config)) *metricsHub {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t))
	db, err := storage.Open(context.Background(), path, storage.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{DB: db, Clock: clk, Logger: log, OnlineWindow: agentsock.OnlineWindow, Version: "test"})
	svc := runs.New(runs.Config{DB: db, Clock: clk, Log: log, Observer: m})
	cfg := httpapi.Config{Logger: log, DB: db, Version: "test", HubTimezone: "UTC", Clock: clk, Runs: svc, Metrics: m}
	if configure != nil {
		configure(&cfg)
	}
	srv := httptest.NewServer(httpapi.New(cfg))
	h := &metricsHub{Hub: &apitest.Hub{URL: srv.URL, DB: db, Clock: clk, Config: cfg, Server: srv}, runs: svc}
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		srv.Close()
		if err := db.Close(); err != nil {
			t.Errorf("close database: %v", err)
		}
	}
	t.Cleanup(h.stop)
	return h
}

// scrape reads GET /metrics with an optional bearer token.
func scrape(t *testing.T, hubURL, token string) (int, []byte, map[string]*dto.MetricFamily) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, hubURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, body, nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape Content-Type = %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("scrape is not the Prometheus text format: %v\n%s", err, body)
	}
	return resp.StatusCode, body, mfs
}

// value returns the value of the series of family name whose labels include want, and whether
// there is one.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func wantValue(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := value(mfs, name, labels)
	if !ok || got != want {
		t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
	}
}

// Runs in every status are counted from the database, so the counts are the same after a
// restart (a new server on the same file) and after run history is pruned; a run canceled while
// running counts as canceled even though its executor reported success. The live histograms
// start empty again.
func TestMetricsCountsSurviveARestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bastion.db")
	clk := clock.NewFake(apitest.Epoch)
	a := startMetricsHub(t, path, clk, func(cfg *httpapi.Config) { cfg.MetricsPublic = true })
	c := a.Login(t)
	create := func(name, overlap string) string {
		t.Helper()
		st, body := c.Post(t, "/api/jobs", map[string]any{"name": name, "overlap_policy": overlap, "spec": map[string]any{
			"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{"/srv/app"}},
			"target": map[string]any{"type": "local_dir", "base_dir": "/srv/bk"}}})
		if st != http.StatusOK {
			t.Fatalf("create job %s: %d %v", name, st, body)
		}
		return body["id"].(string)
	}
	runNow := func(job, wantStatus string) string {
		t.Helper()
		st, body := c.Post(t, "/api/jobs/"+job+"/run", nil)
		if st != http.StatusOK || body["status"] != wantStatus {
			t.Fatalf("run %s now: %d %v, want %s", job, st, body, wantStatus)
		}
		return body["run_id"].(string)
	}
	claim := func(run string) {
		t.Helper()
		if ok, err := a.DB.Writer().ClaimRun(context.Background(), run, clk.Now().Unix()); err != nil || !ok {
			t.Fatalf("start run %s: %v %v", run, ok, err)
		}
	}
	finish := func(run, status string) {
		t.Helper()
		out := runs.Outcome{Status: status}
		if err := a.runs.Finish(context.Background(), run, out); err != nil {
			t.Fatal(err)
		}
	}
	nightly := create("nightly", "queue")
	single := create("single", "reject")
	busy := create("busy", "queue")

	ok := runNow(nightly, storage.RunQueued)
	claim(ok)
	clk.Advance(42 * time.Second)
	finish(ok, storage.RunSuccess)
	successAt := clk.Now().Unix()
	bad := runNow(nightly, storage.RunQueued)
	claim(bad)
	finish(bad, storage.RunFailed)
	// Canceled while queued, and canceled while running with a success reported afterwards.
	queuedCancel := runNow(nightly, storage.RunQueued)
	if st, body := c.Post(t, "/api/runs/"+queuedCancel+"/cancel", nil); st != http.StatusOK || body["status"] != storage.RunCanceled {
		t.Fatalf("cancel queued run: %d %v", st, body)
	}
	runningCancel := runNow(nightly, storage.RunQueued)
	claim(runningCancel)
	if st, body := c.Post(t, "/api/runs/"+runningCancel+"/cancel", nil); st != http.StatusOK || body["status"] != storage.RunRunning {
		t.Fatalf("cancel running run: %d %v", st, body)
	}
	finish(runningCancel, storage.RunSuccess)
	// One queued (and its overlap rejected), one running.
	runNow(single, storage.RunQueued)
	runNow(single, storage.RunRejected)
	claim(runNow(busy, storage.RunQueued))

	// Some API traffic for the route label: raw ids and unknown paths never become labels.
	c.Get(t, "/api/jobs/"+nightly)
	c.Get(t, "/api/jobs/"+busy)
	c.Get(t, "/api/no-such-thing/"+nightly)

	counts := func(mfs map[string]*dto.MetricFamily, when string) {
		t.Helper()
		for _, w := range []struct {
			job, status string
			n           float64
		}{
			{nightly, storage.RunSuccess, 1}, {nightly, storage.RunFailed, 1}, {nightly, storage.RunCanceled, 2},
			{single, storage.RunRejected, 1},
		} {
			wantValue(t, mfs, "bastion_runs_total", map[string]string{"job_id": w.job, "node": "hub", "status": w.status}, w.n)
		}
		if v, ok := value(mfs, "bastion_runs_total", map[string]string{"job_id": busy}); ok {
			t.Errorf("%s: job busy has runs_total %v; its only run is still running", when, v)
		}
		wantValue(t, mfs, "bastion_last_success_timestamp_seconds", map[string]string{"job_id": nightly}, float64(successAt))
		wantValue(t, mfs, "bastion_run_queue_depth", nil, 1)
		wantValue(t, mfs, "bastion_runs_running", nil, 1)
		wantValue(t, mfs, "bastion_job_info", map[string]string{"job_id": nightly, "job_name": "nightly", "node": "hub"}, 1)
		wantValue(t, mfs, "bastion_agents", map[string]string{"state": "online"}, 0)
		wantValue(t, mfs, "bastion_notifications", map[string]string{"status": "failed"}, 0)
	}

	st, body, mfs := scrape(t, a.URL, "")
	if st != http.StatusOK {
		t.Fatalf("public scrape: %d %s", st, body)
	}
	counts(mfs, "before the restart")
	// Every run that ran was observed live: the success (42 s), the failure and the canceled one.
	wantValue(t, mfs, "bastion_run_duration_seconds", map[string]string{"job_id": nightly}, 3)
	wantValue(t, mfs, "bastion_http_request_duration_seconds", map[string]string{"route": "/api/jobs/{id}", "code": "200"}, 2)
	wantValue(t, mfs, "bastion_http_request_duration_seconds", map[string]string{"route": metrics.RouteUnmatched, "code": "404"}, 1)
	for _, m := range mfs["bastion_http_request_duration_seconds"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "route" && strings.Contains(lp.GetValue(), nightly) {
				t.Errorf("route label %q carries a raw path", lp.GetValue())
			}
		}
	}

	a.stop()
	b := startMetricsHub(t, path, clk, nil)
	// A viewer's token is enough: any role may scrape.
	_, token := b.Login(t).CreateToken(t, "prometheus", httpapi.RoleViewer)
	if st, body, _ := scrape(t, b.URL, "bst_wrong"); st != http.StatusUnauthorized {
		t.Fatalf("scrape with a bad token: %d %s", st, body)
	}
	st, body, mfs = scrape(t, b.URL, token)
	if st != http.StatusOK {
		t.Fatalf("scrape with a token after the restart: %d %s", st, body)
	}
	counts(mfs, "after the restart")
	if _, ok := value(mfs, "bastion_run_duration_seconds", map[string]string{"job_id": nightly}); ok {
		t.Error("run durations survived the restart: they are observed live")
	}

	// Pruning run history lowers no counter.
	if n, err := b.DB.Writer().PruneRuns(context.Background(), clk.Now().Unix()+1, 100); err != nil || n < 5 {
		t.Fatalf("prune: %d %v", n, err)
	}
	_, _, mfs = scrape(t, b.URL, token)
	counts(mfs, "after pruning")
}

// Without --metrics-public and without an API token, /metrics refuses everyone with the usual
// 401 envelope; a browser session is not enough.
func TestMetricsRefusedWithoutCredentials(t *testing.T) {
	t.Parallel()
	h := startMetricsHub(t, filepath.Join(t.TempDir(), "bastion.db"), clock.NewFake(apitest.Epoch), nil)
	st, body, _ := scrape(t, h.URL, "")
	if st != http.StatusUnauthorized || !strings.Contains(string(body), `"error":"unauthorized"`) {
		t.Fatalf("scrape without credentials: %d %s", st, body)
	}
	if st, body, _ := scrape(t, h.URL, "anything"); st != http.StatusUnauthorized {
		t.Fatalf("scrape with a token nobody issued: %d %s", st, body)
	}
	c := h.Login(t)
	resp := c.Do(t, http.MethodGet, "/metrics", nil)
	if resp.Status != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || resp.ErrorCode() != "unauthorized" {
		t.Fatalf("scrape with a session: %s (WWW-Authenticate %q)", resp, resp.Header.Get("WWW-Authenticate"))
	}
	if strings.Contains(string(resp.Body), "bastion_") {
		t.Fatal("a refused scrape leaked metrics")
	}
}
