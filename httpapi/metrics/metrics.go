// Package metrics is the Hub's Prometheus instrumentation: one registry owned by the server (never
// the global default), a collector that reads the durable figures from the database at scrape
// time, the histograms the engine feeds through its observer hooks, and the HTTP middleware.
//
// # What comes from where
//
// Whatever must be right after a restart is read from SQLite at each scrape (dbCollector): runs by
// terminal status and the last success (table run_totals, kept by triggers, so the counters never
// go down when run history is pruned), the queue, agents, notifications, snapshots and the last
// restore drill. Histograms are observed live and start empty after a restart: run duration (the
// run queue's Observer), scheduler lateness (the scheduler's Observer) and HTTP request duration.
//
// # Labels
//
// Jobs are labelled job_id, never job: Prometheus attaches its own "job" label (the scrape job)
// to every series, and a metric carrying "job" too would have it renamed to exported_job. The
// job's name is only on bastion_job_info, so that renaming a job neither splits a counter into
// two series nor multiplies them; join it where a name is wanted:
//
//	bastion_runs_total * on(job_id) group_left(job_name) bastion_job_info
//
// Every label value is bounded by what exists in the database (jobs, agents, statuses) or by the
// router's route patterns.
package metrics

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/storage"
)

// Options build Metrics.
type Options struct {
	DB     *storage.DB
	Clock  clock.Clock // nil: the wall clock
	Logger zerolog.Logger
	// OnlineWindow: an agent heard from this recently (and not revoked) counts as online, as the
	// agents page says it.
	OnlineWindow time.Duration
	Version      string
	// ScrapeTimeout bounds the database reads of one scrape (default 10 s).
	ScrapeTimeout time.Duration
}

// Metrics owns the registry. Its RunEnded and TriggerFired methods are the engine's observers
// (runs.Observer, scheduler.Observer).
type Metrics struct {
	reg          *prometheus.Registry
	log          zerolog.Logger
	runDuration  *prometheus.HistogramVec
	lateness     prometheus.Histogram
	httpDuration *prometheus.HistogramVec
}

// Run durations span seconds (a small directory) to a day (a first full backup).
var runDurationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400}

// The scheduler wakes on its own timer: lateness is normally well under a second; tens of seconds
// mean a starved host or a long write holding the database.
var latenessBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60}

// New builds the registry with every Bastion metric and the Go runtime and process collectors.
func New(o Options) *Metrics {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.ScrapeTimeout <= 0 {
		o.ScrapeTimeout = 10 * time.Second
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: o.Logger.With().Str("component", "metrics").Logger(),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bastion_run_duration_seconds",
			Help:    "How long runs ran, from start to end, by job; observed when a run that had started ends (success, failed or canceled).",
			Buckets: runDurationBuckets,
		}, []string{"job_id"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bastion_scheduler_lateness_seconds",
			Help:    "How long after its due time the scheduler fired a trigger (on-time fires; catch-up runs after an outage are not counted).",
			Buckets: latenessBuckets,
		}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bastion_http_request_duration_seconds",
			Help:    "HTTP request duration by route pattern and status code; requests that matched no route share route=\"unmatched\". WebSocket connections are not counted.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "code"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bastion_build_info", Help: "Always 1; the Hub's version.", ConstLabels: prometheus.Labels{"version": o.Version},
	})
	build.Set(1)
	m.reg.MustRegister(
		m.runDuration, m.lateness, m.httpDuration, build,
		&dbCollector{db: o.DB, clock: o.Clock, onlineWindow: o.OnlineWindow, timeout: o.ScrapeTimeout},
		&poolCollector{db: o.DB},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry is the server's registry (tests and callers that add their own collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RunEnded observes a run's duration (runs.Observer).
func (m *Metrics) RunEnded(jobID, status string, ran time.Duration) {
	m.runDuration.WithLabelValues(jobID).Observe(ran.Seconds())
}

// TriggerFired observes how late the scheduler fired a trigger (scheduler.Observer).
func (m *Metrics) TriggerFired(jobID string, late time.Duration) {
	m.lateness.Observe(late.Seconds())
}

// Handler serves the registry in the Prometheus text format (or what the scraper negotiates). A
// failed database read is logged and leaves its metrics out; the rest is still served, so that a
// locked database does not also blind the process metrics.
//
// At most two scrapes gather at once (the others get 503). A scrape's answer is gathered into
// memory and written after its slot is free: written from inside promhttp's handler, a client
// that reads slowly (anyone, with --metrics-public) would hold a slot for as long as it liked.
func (m *Metrics) Handler() http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            promLogger{m.log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: MaxScrapesInFlight,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bufferedResponse
		h.ServeHTTP(&b, r)
		for k, v := range b.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(b.body.Len()))
		// A client that does not read would otherwise keep the answer in memory for good. The
		// deadline is the connection's: it is lifted again for the next request on it.
		rc := http.NewResponseController(w)
		if rc.SetWriteDeadline(time.Now().Add(scrapeWriteTimeout)) == nil {
			defer rc.SetWriteDeadline(time.Time{})
		}
		w.WriteHeader(b.statusOr200())
		_, _ = w.Write(b.body.Bytes())
	})
}

// scrapeWriteTimeout bounds how long a scrape's answer may take to be written.
const scrapeWriteTimeout = 30 * time.Second

// MaxScrapesInFlight bounds the scrapes gathered at once.
const MaxScrapesInFlight = 2

// bufferedResponse keeps an answer in memory.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header {
	if b.header == nil {
		b.header = http.Header{}
	}
	return b.header
}

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func (b *bufferedResponse) statusOr200() int {
	if b.status == 0 {
		return http.StatusOK
	}
	return b.status
}

type promLogger struct{ log zerolog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn().Msg(fmt.Sprint(v...)) }

var (
	descJobInfo = prometheus.NewDesc("bastion_job_info",
		"Always 1, one series per job: its name, node, whether it has a schedule and whether it is archived. Join on job_id for names.",
		[]string{"job_id", "job_name", "node", "scheduled", "archived"}, nil)
	descRunsTotal = prometheus.NewDesc("bastion_runs_total",
		"Runs that ended, by job, node and terminal status (success, failed, rejected, canceled); kept in the database, so right after a restart and never lowered by history pruning.",
		[]string{"job_id", "node", "status"}, nil)
	descLastSuccess = prometheus.NewDesc("bastion_last_success_timestamp_seconds",
		"When the job's last successful run ended (unix seconds); absent for a job that never succeeded.",
		[]string{"job_id"}, nil)
	descQueueDepth = prometheus.NewDesc("bastion_run_queue_depth", "Runs queued and not yet started.", nil, nil)
	descRunning    = prometheus.NewDesc("bastion_runs_running", "Runs running now (on the Hub and on agents).", nil, nil)
	descAgents     = prometheus.NewDesc("bastion_agents",
		"Enrolled agents by state: online (heard from within the online window), offline, revoked.", []string{"state"}, nil)
	descNotifications = prometheus.NewDesc("bastion_notifications",
		"Notifications in the queue's history by status (queued, sending, sent, failed, canceled).", []string{"status"}, nil)
	descSnapshotsBytes = prometheus.NewDesc("bastion_snapshots_bytes",
		"Stored size of the job's snapshots present on their target (transfer bytes, else source bytes).", []string{"job_id"}, nil)
	descSnapshots = prometheus.NewDesc("bastion_snapshots",
		"Snapshots of the job present on their target.", []string{"job_id"}, nil)
	descVerifyStatus = prometheus.NewDesc("bastion_verify_last_status",
		"Always 1: the outcome of the job's last restore drill (status success, failed or canceled); absent for a job never verified.",
		[]string{"job_id", "status"}, nil)
	descVerifyLast = prometheus.NewDesc("bastion_verify_last_timestamp_seconds",
		"When the job's last restore drill ended (unix seconds).", []string{"job_id"}, nil)
	descVerifySuccess = prometheus.NewDesc("bastion_verify_last_success_timestamp_seconds",
		"When a restore drill of the job last succeeded (unix seconds).", []string{"job_id"}, nil)
)

// dbCollector reads the durable figures at scrape time, in one read transaction.
type dbCollector struct {
	db           *storage.DB
	clock        clock.Clock
	onlineWindow time.Duration
	timeout      time.Duration
}

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJobInfo, descRunsTotal, descLastSuccess, descQueueDepth, descRunning,
		descAgents, descNotifications, descSnapshotsBytes, descSnapshots, descVerifyStatus, descVerifyLast, descVerifySuccess} {
		ch <- d
	}
}

// notificationStatuses are always reported, zero included, so that alert expressions on a status
// never see an absent series.
var notificationStatuses = []string{storage.NotificationQueued, storage.NotificationSending, storage.NotificationSent,
	storage.NotificationFailed, storage.NotificationCanceled}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	now := c.clock.Now()
	var mc storage.MetricsCounts
	err := c.db.Read(ctx, func(q storage.Q) error {
		var err error
		mc, err = q.MetricsCounts(ctx, now.Add(-c.onlineWindow).Unix())
		return err
	})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descRunsTotal, err)
		return
	}
	node := make(map[string]string, len(mc.Jobs))
	for _, j := range mc.Jobs {
		node[j.ID] = j.Node
		ch <- prometheus.MustNewConstMetric(descJobInfo, prometheus.GaugeValue, 1,
			j.ID, j.Name, j.Node, strconv.FormatBool(j.Scheduled), strconv.FormatBool(j.Archived))
	}
	for _, t := range mc.RunTotals {
		ch <- prometheus.MustNewConstMetric(descRunsTotal, prometheus.CounterValue, float64(t.Runs), t.JobID, node[t.JobID], t.Status)
		if t.Status == storage.RunSuccess && t.LastEndedAt != nil {
			ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, float64(*t.LastEndedAt), t.JobID)
		}
	}
	ch <- prometheus.MustNewConstMetric(descQueueDepth, prometheus.GaugeValue, float64(mc.Queued))
	ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, float64(mc.Running))
	ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(mc.AgentsOnline), "online")
	ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(mc.AgentsOffline), "offline")
	ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(mc.AgentsRevoked), "revoked")
	statuses := append([]string(nil), notificationStatuses...)
	for st := range mc.Notifications {
		if !slices.Contains(statuses, st) {
			statuses = append(statuses, st)
		}
	}
	sort.Strings(statuses)
	for _, st := range statuses {
		ch <- prometheus.MustNewConstMetric(descNotifications, prometheus.GaugeValue, float64(mc.Notifications[st]), st)
	}
	for _, s := range mc.Snapshots {
		ch <- prometheus.MustNewConstMetric(descSnapshotsBytes, prometheus.GaugeValue, float64(s.Bytes), s.JobID)
		ch <- prometheus.MustNewConstMetric(descSnapshots, prometheus.GaugeValue, float64(s.Count), s.JobID)
	}
	for _, v := range mc.Verify {
		ch <- prometheus.MustNewConstMetric(descVerifyStatus, prometheus.GaugeValue, 1, v.JobID, v.LastStatus)
		if v.LastVerifiedAt != nil {
			ch <- prometheus.MustNewConstMetric(descVerifyLast, prometheus.GaugeValue, float64(*v.LastVerifiedAt), v.JobID)
		}
		if v.LastProvenAt != nil {
			ch <- prometheus.MustNewConstMetric(descVerifySuccess, prometheus.GaugeValue, float64(*v.LastProvenAt), v.JobID)
		}
	}
}

var (
	descConnWaits = prometheus.NewDesc("bastion_sqlite_conn_waits_total",
		"Times a database call waited for a connection, by pool: writer (the one write connection; a wait is a write queued behind another, the busy wait of this design) or reader.",
		[]string{"pool"}, nil)
	descConnWaitSeconds = prometheus.NewDesc("bastion_sqlite_conn_wait_seconds_total",
		"Total time database calls waited for a connection, by pool.", []string{"pool"}, nil)
	descLocked = prometheus.NewDesc("bastion_sqlite_locked_errors_total",
		"Transactions that failed with \"database is locked\": another process held the database file past the busy timeout.", nil, nil)
)

// poolCollector reports the database pools' waits (storage.DB.Stats), without touching SQLite.
type poolCollector struct{ db *storage.DB }

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConnWaits
	ch <- descConnWaitSeconds
	ch <- descLocked
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.db.Stats()
	for pool, s := range map[string]struct {
		n int64
		d time.Duration
	}{"writer": {st.Writer.WaitCount, st.Writer.WaitDuration}, "reader": {st.Readers.WaitCount, st.Readers.WaitDuration}} {
		ch <- prometheus.MustNewConstMetric(descConnWaits, prometheus.CounterValue, float64(s.n), pool)
		ch <- prometheus.MustNewConstMetric(descConnWaitSeconds, prometheus.CounterValue, s.d.Seconds(), pool)
	}
	ch <- prometheus.MustNewConstMetric(descLocked, prometheus.CounterValue, float64(st.LockedErrors))
}
