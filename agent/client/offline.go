package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/schedule"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
)

// Offline runs: while the agent cannot reach the Hub it runs its scheduled jobs from the cached
// config snapshot. Each run lives in <data>/agent/offline_runs/<run_id>/ as run.json and
// events.jsonl until the Hub has it (POST /agent/runs/ingest answered 204).

type offlineRun struct {
	ID        string          `json:"id"`
	JobID     string          `json:"job_id"`
	Status    string          `json:"status"` // running | success | failed | rejected
	StartedAt int64           `json:"started_at"`
	EndedAt   int64           `json:"ended_at,omitempty"`
	Summary   json.RawMessage `json:"summary,omitempty"`
	Error     *string         `json:"error,omitempty"`
	Offline   bool            `json:"executed_offline"`
	// Target is where the run writes, from the spec it runs (no credentials): the Hub records the
	// snapshot there, whatever the job's spec says by the time the run is uploaded.
	Target *targets.Redacted `json:"target,omitempty"`
}

type offlineEvent struct {
	Seq     int64           `json:"seq"`
	TS      int64           `json:"ts"`
	Level   string          `json:"level"`
	Kind    string          `json:"kind"`
	Message string          `json:"message"`
	Fields  json.RawMessage `json:"fields,omitempty"`
}

func (a *Agent) offlineDir() string { return filepath.Join(a.o.DataDir, "agent", "offline_runs") }

type cachedSchedule struct {
	key  string
	s    *schedule.Schedule
	next time.Time
}

// offlineMaxSleep caps the offline scheduler's sleep while jobs are scheduled, so that a suspend or
// a clock step is noticed.
const offlineMaxSleep = 5 * time.Minute

// offlineScheduler runs the cached jobs' cron while the agent is disconnected. While connected
// the Hub schedules, so due triggers are only stepped over. It sleeps until the earliest next
// trigger (capped at offlineMaxSleep), or for good when nothing is scheduled: a new config and a
// lost connection wake it (schedWake).
func (a *Agent) offlineScheduler(ctx context.Context) {
	if a.o.Managed == nil {
		return
	}
	cache := map[string]*cachedSchedule{}
	t := a.clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-a.schedWake:
		}
		now := a.clock.Now()
		var next time.Time // the earliest trigger; zero while nothing is scheduled
		cfg := a.o.Managed.Config()
		seen := map[string]bool{}
		if cfg != nil {
			for _, job := range cfg.Jobs {
				if job.Schedule == nil || *job.Schedule == "" {
					continue
				}
				seen[job.JobID] = true
				tz := "UTC"
				if job.ScheduleTimezone != nil && *job.ScheduleTimezone != "" {
					tz = *job.ScheduleTimezone
				}
				key := *job.Schedule + "|" + tz
				c := cache[job.JobID]
				if c == nil || c.key != key {
					loc, err := time.LoadLocation(tz)
					if err != nil {
						continue
					}
					s, err := schedule.Parse(*job.Schedule, loc)
					if err != nil {
						continue
					}
					c = &cachedSchedule{key: key, s: s, next: s.Next(now)}
					cache[job.JobID] = c
				}
				for !c.next.IsZero() && !c.next.After(now) {
					a.mu.Lock()
					connected := a.sess != nil
					a.mu.Unlock()
					if !connected {
						a.startOffline(ctx, job, c.next)
					}
					c.next = c.s.Next(now)
				}
				if !c.next.IsZero() && (next.IsZero() || c.next.Before(next)) {
					next = c.next
				}
			}
		}
		for id := range cache {
			if !seen[id] {
				delete(cache, id)
			}
		}
		if next.IsZero() {
			t.Stop()
			continue
		}
		// From the clock now, not at the start of the pass: starting offline runs writes files,
		// and that time must shorten the sleep, not push the next trigger later.
		t.Reset(max(min(next.Sub(a.clock.Now()), offlineMaxSleep), 0))
	}
}

// startOffline records and starts one offline run (or a rejected one, when the job is still
// running and its overlap policy is reject).
func (a *Agent) startOffline(ctx context.Context, job protocol.ConfigJob, at time.Time) {
	id := protocol.NewUUID()
	log := a.log.With().Str("run_id", id).Str("job_id", job.JobID).Logger()
	now := a.clock.Now().Unix()
	a.mu.Lock()
	busy := a.offlineBusy[job.JobID]
	if !busy || job.OverlapPolicy != "reject" {
		a.offlineBusy[job.JobID] = true
	}
	a.mu.Unlock()
	if busy && job.OverlapPolicy == "reject" {
		msg := "overlap_rejected"
		if err := a.writeOfflineRun(offlineRun{ID: id, JobID: job.JobID, Status: "rejected", StartedAt: now, EndedAt: now, Error: &msg, Offline: true}); err != nil {
			log.Error().Err(err).Msg("record rejected offline run")
		}
		return
	}
	run := offlineRun{ID: id, JobID: job.JobID, Status: "running", StartedAt: now, Offline: true}
	if spec, err := jobspec.ParseAndValidate(job.Spec); err == nil {
		rt := opener.FromSpec(a.id.AgentID, spec.Target)
		run.Target = &rt.Target
	}
	if err := a.writeOfflineRun(run); err != nil {
		log.Error().Err(err).Msg("could not record an offline run; skipping it")
		a.mu.Lock()
		delete(a.offlineBusy, job.JobID)
		a.mu.Unlock()
		return
	}
	log.Info().Time("trigger", at).Msg("hub unreachable: running the scheduled job from the cached config")
	a.offlineWG.Add(1)
	go func() {
		defer a.offlineWG.Done()
		defer func() {
			a.mu.Lock()
			delete(a.offlineBusy, job.JobID)
			a.mu.Unlock()
		}()
		ev := &eventFile{path: filepath.Join(a.offlineDir(), id, "events.jsonl"), now: a.clock.Now}
		task := &protocol.Task{TaskID: id, Task: protocol.BackupTask{RunID: id, JobID: job.JobID, JobName: job.Name, StartedAt: now, Spec: job.Spec,
			AgeRecipient: job.AgeRecipient}}
		var res protocol.TaskResult
		select {
		case a.lock <- struct{}{}:
			res = a.exec.Execute(ctx, task, ev.emit)
			<-a.lock
		case <-ctx.Done():
			res = canceledResult()
		}
		run.EndedAt = max(a.clock.Now().Unix(), run.StartedAt)
		run.Summary, run.Error = res.Summary, res.Error
		switch res.Status {
		case protocol.StatusSuccess:
			run.Status = "success"
		default:
			run.Status = "failed" // the ingest API knows success, failed and rejected
		}
		if err := a.writeOfflineRun(run); err != nil {
			log.Error().Err(err).Msg("record the end of an offline run")
		}
		log.Info().Str("status", run.Status).Msg("offline run finished")
	}()
}

func (a *Agent) writeOfflineRun(r offlineRun) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(a.offlineDir(), r.ID, "run.json"), b)
}

// eventFile appends a run's events to events.jsonl with seq and ts; progress snapshots are not
// kept (only the latest would matter, and the run is over when the Hub sees it).
type eventFile struct {
	mu   sync.Mutex
	path string
	seq  int64
	now  func() time.Time
}

func (e *eventFile) emit(ev *protocol.RunEvent) {
	if ev.Kind == progressKind {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	b, _ := json.Marshal(offlineEvent{Seq: e.seq, TS: e.now().Unix(), Level: ev.Level, Kind: ev.Kind, Message: ev.Message, Fields: ev.Fields})
	f, err := os.OpenFile(e.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(b, '\n'))
}

// uploadOffline sends every finished offline run, in directory order, and deletes each after the
// Hub's 204. The first failure stops the pass; runs still going wait for the next connection.
func (a *Agent) uploadOffline(ctx context.Context) {
	entries, err := os.ReadDir(a.offlineDir())
	if err != nil {
		return
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(a.offlineDir(), e.Name())
		var run offlineRun
		if ok, err := readJSON(filepath.Join(dir, "run.json"), &run); err != nil || !ok {
			a.log.Warn().Err(err).Str("dir", dir).Msg("offline run without a readable run.json; kept")
			return
		}
		if run.Status == "running" {
			a.mu.Lock()
			busy := a.offlineBusy[run.JobID]
			a.mu.Unlock()
			if busy {
				continue
			}
			// Left running by a crash: it did not finish.
			msg := "the agent stopped while this offline run was running"
			run.Status, run.Error, run.EndedAt = "failed", &msg, max(run.StartedAt, a.clock.Now().Unix())
		}
		if err := a.ingest(ctx, dir, run); err != nil {
			a.log.Warn().Err(err).Str("run_id", run.ID).Msg("upload of offline runs stopped; retrying on the next connection")
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			a.log.Warn().Err(err).Str("run_id", run.ID).Msg("remove uploaded offline run")
		}
		a.log.Info().Str("run_id", run.ID).Str("status", run.Status).Msg("offline run uploaded")
	}
}

func (a *Agent) ingest(ctx context.Context, dir string, run offlineRun) error {
	events := []offlineEvent{}
	if f, err := os.Open(filepath.Join(dir, "events.jsonl")); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev offlineEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				f.Close()
				return fmt.Errorf("events of offline run %s are damaged: %w", run.ID, err)
			}
			events = append(events, ev)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read events of offline run %s: %w", run.ID, err)
		}
	}
	if len(events) > 2000 {
		events = events[len(events)-2000:]
	}
	body, err := json.Marshal(map[string]any{"run": map[string]any{
		"id": run.ID, "job_id": run.JobID, "status": run.Status, "started_at": run.StartedAt, "ended_at": run.EndedAt,
		"summary": run.Summary, "error": run.Error, "events": events, "target": run.Target,
	}})
	if err != nil {
		return err
	}
	u, err := protocol.HTTPURL(a.id.HubURL, "agent/runs/ingest")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.id.AgentKey)
	resp, err := a.o.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("upload offline run %s: %w", run.ID, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("upload offline run %s: hub answered %d", run.ID, resp.StatusCode)
	}
	return nil
}
