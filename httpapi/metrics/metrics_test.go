package metrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

var epoch = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fixture fills a database with one of everything the collector reports: a job with a success
// and a failure, a snapshot, a notification, agents in every state and a failed drill.
func fixture(t testing.TB, db *storage.DB) {
	t.Helper()
	now := epoch.Unix()
	stmts := []string{
		`INSERT INTO jobs(id, name, agent_id, schedule, spec_json, created_at, updated_at) VALUES ('j1', 'nightly', NULL, '0 3 * * *', '{}', 1, 1)`,
		`INSERT INTO agents(id, key_hash, last_seen_at, created_at, updated_at) VALUES ('a-on', x'01', ` + itoa(now-10) + `, 1, 1)`,
		`INSERT INTO agents(id, key_hash, last_seen_at, created_at, updated_at) VALUES ('a-off', x'02', ` + itoa(now-3600) + `, 1, 1)`,
		`INSERT INTO agents(id, key_hash, revoked_at, created_at, updated_at) VALUES ('a-rev', x'03', 5, 1, 1)`,
		`INSERT INTO jobs(id, name, agent_id, schedule, spec_json, created_at, updated_at) VALUES ('j2', 'laptop', 'a-on', NULL, '{}', 1, 1)`,
		`INSERT INTO runs(id, job_id, status, started_at, ended_at) VALUES ('r1', 'j1', 'success', 100, 160)`,
		`INSERT INTO runs(id, job_id, status, started_at, ended_at) VALUES ('r2', 'j1', 'failed', 200, 210)`,
		`INSERT INTO runs(id, job_id, status, started_at) VALUES ('r3', 'j2', 'queued', 300)`,
		`INSERT INTO run_artifacts(run_id, job_id, node_id, target_type, target_snapshot_json, artifact_format, status,
			started_at, ended_at, source_bytes, transfer_bytes, created_at, updated_at)
			VALUES ('r1', 'j1', 'hub', 'local_dir', '{}', 'archive_v1', 'present', 100, 160, 5000, 3000, 1, 1)`,
		`INSERT INTO notifications(id, run_id, channel, secret_name, status, next_attempt_at, created_at, updated_at)
			VALUES ('n1', 'r2', 'email', 'ops', 'failed', 1, 1, 1)`,
		`INSERT INTO job_verification(job_id, baseline_at, last_verified_at, last_verify_status, last_proven_at, updated_at)
			VALUES ('j1', 1, 400, 'failed', 300, 1)`,
	}
	for _, s := range stmts {
		if _, err := db.Writer().Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func newMetrics(t testing.TB, db *storage.DB) *Metrics {
	return New(Options{DB: db, Clock: clock.NewFake(epoch), Logger: zerolog.Nop(), OnlineWindow: time.Minute, Version: "test"})
}

// exposed returns every metric family name the registry serves, after one observation of each
// live histogram.
func exposed(t *testing.T, m *Metrics) map[string]bool {
	t.Helper()
	m.RunEnded("j1", storage.RunSuccess, time.Minute)
	m.TriggerFired("j1", time.Second)
	r := chi.NewRouter()
	r.Use(m.Middleware)
	r.Get("/api/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {})
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/api/jobs/j1", nil))
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	return out
}

func TestEveryBastionMetricIsExposed(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	fixture(t, db)
	got := exposed(t, newMetrics(t, db))
	for _, name := range []string{
		"bastion_build_info", "bastion_job_info", "bastion_runs_total", "bastion_run_duration_seconds",
		"bastion_last_success_timestamp_seconds", "bastion_run_queue_depth", "bastion_runs_running", "bastion_agents",
		"bastion_notifications", "bastion_scheduler_lateness_seconds", "bastion_snapshots_bytes", "bastion_snapshots",
		"bastion_http_request_duration_seconds", "bastion_verify_last_status", "bastion_verify_last_timestamp_seconds",
		"bastion_verify_last_success_timestamp_seconds", "bastion_sqlite_conn_waits_total",
		"bastion_sqlite_conn_wait_seconds_total", "bastion_sqlite_locked_errors_total",
		"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes",
	} {
		if !got[name] {
			t.Errorf("%s is not exposed", name)
		}
	}
}

// The alert rules shipped in docs/monitoring/alerts.yml name only metrics the Hub exposes
// (promtool is not available here, so the check is by name).
func TestAlertRulesNameExposedMetrics(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	fixture(t, db)
	got := exposed(t, newMetrics(t, db))
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "monitoring", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	exprs := 0
	names := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.Contains(line, "expr:") {
			exprs++
		}
		for _, n := range regexp.MustCompile(`\bbastion_[a-z0-9_]+`).FindAllString(line, -1) {
			names[n] = true
		}
	}
	if exprs < 5 || len(names) < 5 {
		t.Fatalf("found %d rules naming %d metrics in alerts.yml; the parse is broken", exprs, len(names))
	}
	for n := range names {
		base := n
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(n, suf); ok && got[b] {
				base = b
			}
		}
		if !got[base] {
			t.Errorf("alerts.yml names %s, which the Hub does not expose", n)
		}
	}
	for _, want := range []string{"bastion_last_success_timestamp_seconds", "bastion_agents", "bastion_notifications",
		"bastion_verify_last_status"} {
		if !names[want] {
			t.Errorf("alerts.yml has no rule on %s", want)
		}
	}
}

// Raw paths never become label values: a matched route is its pattern, anything else one value.
func TestRouteLabelIsThePattern(t *testing.T) {
	t.Parallel()
	m := newMetrics(t, storagetest.Open(t))
	r := chi.NewRouter()
	r.Use(m.Middleware)
	r.Route("/api", func(r chi.Router) {
		r.Get("/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {})
		r.NotFound(http.NotFound)
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }) // the web UI
	for _, p := range []string{"/api/jobs/1", "/api/jobs/2", "/api/nope/3", "/assets/x-4.js", "/nope/5"} {
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "bastion_http_request_duration_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var route, code string
			for _, lp := range mt.GetLabel() {
				switch lp.GetName() {
				case "route":
					route = lp.GetValue()
				case "code":
					code = lp.GetValue()
				}
			}
			got[route+" "+code] = mt.GetHistogram().GetSampleCount()
		}
	}
	want := map[string]uint64{"/api/jobs/{id} 200": 2, "unmatched 404": 1, "unmatched 200": 2}
	if len(got) != len(want) {
		t.Fatalf("series = %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d requests, want %d (all: %v)", k, got[k], n, got)
		}
	}
}

// stalledWriter is a client that does not read its answer: Write blocks until release is closed.
type stalledWriter struct {
	header  http.Header
	writing chan struct{}
	release chan struct{}
}

func (w *stalledWriter) Header() http.Header { return w.header }
func (w *stalledWriter) WriteHeader(int)     {}
func (w *stalledWriter) Write(p []byte) (int, error) {
	select {
	case w.writing <- struct{}{}:
	default:
	}
	<-w.release
	return len(p), nil
}

// TestStalledScrapersHoldNoSlot: clients that never read their answer (anyone can be one under
// --metrics-public) must not keep a real scraper out: the in-flight bound counts gathering, not
// writing.
func TestStalledScrapersHoldNoSlot(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	fixture(t, db)
	h := newMetrics(t, db).Handler()
	release := make(chan struct{})
	defer close(release)
	for range MaxScrapesInFlight + 1 {
		w := &stalledWriter{header: http.Header{}, writing: make(chan struct{}, 1), release: release}
		go h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		<-w.writing // gathered, now stuck writing
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "bastion_runs_total") {
		t.Fatalf("a scrape behind %d stalled clients: %d %.200s", MaxScrapesInFlight+1, rec.Code, rec.Body.String())
	}
	if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(rec.Body.Len()) {
		t.Fatalf("Content-Length %q for a %d-byte answer", got, rec.Body.Len())
	}
}
