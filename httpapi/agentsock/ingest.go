package agentsock

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Ingest limits.
const (
	MaxIngestEvents = 2000
	maxIngestID     = 128
)

var ingestID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// IngestRequest is the body of POST /agent/runs/ingest: one run the agent executed offline.
type IngestRequest struct {
	Run IngestRun `json:"run"`
}

type IngestRun struct {
	ID        string          `json:"id"`
	JobID     string          `json:"job_id"`
	Status    string          `json:"status"` // success | failed | rejected
	StartedAt int64           `json:"started_at"`
	EndedAt   int64           `json:"ended_at"`
	Summary   json.RawMessage `json:"summary"`
	Error     *string         `json:"error"`
	Events    []IngestEvent   `json:"events"`
	// Target is where the agent wrote the run, from the spec it ran (no credentials). Agents
	// before it existed do not send it; the run's summary.target says where then.
	Target *targets.Redacted `json:"target,omitempty"`
}

type IngestEvent struct {
	Seq     int64           `json:"seq"`
	TS      int64           `json:"ts"`
	Level   string          `json:"level"`
	Kind    string          `json:"kind"`
	Message string          `json:"message"`
	Fields  json.RawMessage `json:"fields"`
}

// ingest stores an offline run idempotently: the run is upserted and its events inserted by
// (run_id, seq), ignoring ones already there. 204 on success.
func (h *Hub) ingest(w http.ResponseWriter, r *http.Request) {
	if err := h.gate(r); err != nil {
		respond.Error(w, r, err)
		return
	}
	agent, err := h.authenticate(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, middleware.AgentBodyLimit)
	var req IngestRequest
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) || errors.Is(err, respond.ErrBodyReadTimeout) {
			respond.Error(w, r, err)
			return
		}
		respond.Error(w, r, respond.BadRequest("invalid_json", "request body is not a valid ingest document"))
		return
	}
	run := req.Run
	now := h.clock.Now().Unix()
	latest := now + int64(MaxFutureSkew/time.Second)
	switch {
	case !ingestID.MatchString(run.ID) || len(run.JobID) == 0 || len(run.JobID) > maxIngestID:
		respond.Error(w, r, respond.BadRequest("invalid_run", "run and job ids must be 1 to 128 characters of A-Z a-z 0-9 _ -").Field("run.id"))
		return
	case run.Status != storage.RunSuccess && run.Status != storage.RunFailed && run.Status != storage.RunRejected:
		respond.Error(w, r, respond.BadRequest("invalid_run", "status must be success, failed or rejected").Field("run.status"))
		return
	case run.EndedAt < run.StartedAt:
		respond.Error(w, r, respond.BadRequest("invalid_run", "ended_at is before started_at").Field("run.ended_at"))
		return
	case run.StartedAt < 0 || run.EndedAt > latest:
		// A far-future end would pin the last-success metric and sort the snapshot above every
		// other for good.
		respond.Error(w, r, respond.BadRequest("invalid_run", "started_at and ended_at must lie between 0 and 5 minutes past the Hub's clock").
			Field("run.ended_at"))
		return
	case len(run.Summary) > MaxSummaryBytes:
		respond.Error(w, r, respond.BadRequest("invalid_run", "the summary is larger than 64 KiB").Field("run.summary").Param("max", MaxSummaryBytes))
		return
	case fillFromSummary(&runs.Artifact{}, run.Summary) != nil:
		respond.Error(w, r, respond.BadRequest("invalid_run", "summary sizes and counts must be between 0 and 2^53").Field("run.summary"))
		return
	case run.Error != nil && len(*run.Error) > MaxEventMessage:
		respond.Error(w, r, respond.BadRequest("invalid_run", "the error is longer than 4096 bytes").Field("run.error").Param("max", MaxEventMessage))
		return
	case !validSummaryErrorCode(run.Summary):
		respond.Error(w, r, respond.BadRequest("invalid_run", "summary.error_code must be 1 to 64 characters of a-z 0-9 _ .").Field("run.summary"))
		return
	case run.Target != nil && !validIngestTarget(*run.Target):
		respond.Error(w, r, respond.BadRequest("invalid_run", "target must be a valid "+all.Registry.TypeList()+" target: an absolute base_dir, or a URL without credentials").Field("run.target"))
		return
	case len(run.Events) > MaxIngestEvents:
		respond.Error(w, r, respond.BadRequest("too_many_events", "at most 2000 events per run").Field("run.events").Param("max", MaxIngestEvents))
		return
	}
	rows := make([]storage.RunEvent, 0, len(run.Events))
	for _, e := range run.Events {
		if e.Seq < 1 || e.TS < 0 || e.TS > latest {
			respond.Error(w, r, respond.BadRequest("invalid_event", "seq starts at 1 and ts lies between 0 and 5 minutes past the Hub's clock").Field("run.events"))
			return
		}
		if err := validEvent(e.Level, e.Kind, e.Message, e.Fields); err != nil {
			respond.Error(w, r, respond.BadRequest("invalid_event", err.Error()).Field("run.events"))
			return
		}
		row := storage.RunEvent{RunID: run.ID, Seq: e.Seq, TS: e.TS, Level: e.Level, Kind: e.Kind, Message: e.Message}
		if len(e.Fields) > 0 && string(e.Fields) != "null" {
			f := string(e.Fields)
			row.FieldsJSON = &f
		}
		if row.Level == "" {
			row.Level = "info"
		}
		rows = append(rows, row)
	}
	var summary *string
	if len(run.Summary) > 0 && string(run.Summary) != "null" {
		s := string(run.Summary)
		summary = &s
	}
	ended := run.EndedAt
	stored := storage.Run{ID: run.ID, JobID: run.JobID, Status: run.Status, StartedAt: run.StartedAt,
		EndedAt: &ended, SummaryJSON: summary, Error: run.Error}
	var apiErr error
	err = h.db.Write(r.Context(), func(q storage.Q) error {
		job, err := q.GetJob(r.Context(), run.JobID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && (job.AgentID == nil || *job.AgentID != agent.ID)) {
			apiErr = respond.Forbidden("not_assigned", "the job is not assigned to this agent")
			return nil
		}
		if err != nil {
			return err
		}
		ok, err := q.UpsertIngestedRun(r.Context(), stored, agent.ID, now)
		if err != nil {
			return err
		}
		if !ok {
			// The id names a run the Hub tracks itself (queued, sent to an agent, canceled, run on
			// the Hub) or one of another job: an upload never rewrites it.
			apiErr = respond.Conflict("run_conflict", "the run id belongs to a run the Hub tracks or to another job")
			return nil
		}
		if err := q.InsertRunEventsIgnore(r.Context(), rows); err != nil {
			return err
		}
		if err := recordIngestedTarget(r.Context(), q, job, agent.ID, run); err != nil {
			return err
		}
		if h.cfg.Notifier != nil {
			// Queued with the run, like a run finished on the Hub; a repeated upload queues
			// nothing new (one notification per run and destination).
			if _, err := h.cfg.Notifier.EnqueueFinished(r.Context(), q, stored, job.SpecJSON); err != nil {
				return err
			}
		}
		return nil
	})
	if apiErr != nil {
		err = apiErr
	}
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if h.cfg.Notifier != nil {
		h.cfg.Notifier.Wake()
	}
	zerolog.Ctx(r.Context()).Info().Str("agent_id", agent.ID).Str("run_id", run.ID).Str("job_id", run.JobID).
		Str("status", run.Status).Msg("offline run ingested")
	respond.NoContent(w)
}

// recordIngestedTarget stores where an offline run wrote (runs.target_snapshot_json), so that
// incomplete-run cleanup finds what a failed run left, and indexes a successful run's snapshot
// (run_artifacts, present) on the agent's node, so it can be restored, pinned and deleted like any
// other. The location is what the agent ran (its target, else summary.target), never the job's
// current spec, which may have changed since. An upload repeated later changes nothing the Hub
// did to the snapshot since.
func recordIngestedTarget(ctx context.Context, q storage.Q, job storage.Job, agentID string, run IngestRun) error {
	if run.Status != storage.RunSuccess && run.Status != storage.RunFailed {
		return nil // a rejected run never started: nothing was written anywhere
	}
	rt, ok := ingestedTarget(job, agentID, run)
	if !ok {
		return nil // nothing reliable to record; the run itself is kept
	}
	snap := targetSnapshotJSON(rt)
	// Where a run wrote is recorded by its first upload; a repeat never moves it (nor its
	// snapshot: UpsertRunArtifact keeps the location it has).
	stored, err := q.GetRun(ctx, run.ID)
	if err != nil {
		return err
	}
	if stored.TargetSnapshotJSON != nil {
		snap = *stored.TargetSnapshotJSON
		var first targets.RunTarget
		if json.Unmarshal([]byte(snap), &first) == nil && first.Target.Type != "" {
			rt = first
		}
	} else if err := q.SetRunTargetSnapshot(ctx, run.ID, snap); err != nil {
		return err
	}
	if run.Status != storage.RunSuccess {
		return nil
	}
	a := runs.Artifact{Format: jobspec.FormatArchiveV1}
	_ = fillFromSummary(&a, run.Summary) // checked before the upload was accepted
	return q.UpsertRunArtifact(ctx, storage.RunArtifact{
		RunID: run.ID, JobID: run.JobID, NodeID: agentID, TargetType: rt.Target.Type, TargetSnapshotJSON: snap,
		ArtifactFormat: a.Format, Status: storage.SnapshotPresent, StartedAt: run.StartedAt, EndedAt: run.EndedAt,
		SourceFiles: a.SourceFiles, SourceDirs: a.SourceDirs, SourceBytes: a.SourceBytes, TransferBytes: a.TransferBytes,
		CreatedAt: run.EndedAt, UpdatedAt: run.EndedAt,
	})
}

// ingestedTarget is where the agent wrote the run: the target it sent, else the location in
// summary.target (agents that do not send one), whose WebDAV secret name is the job's when the
// job still points at the same URL.
func ingestedTarget(job storage.Job, agentID string, run IngestRun) (targets.RunTarget, bool) {
	if run.Target != nil {
		return ingestTarget(agentID, *run.Target)
	}
	// Agents that send no target predate other drivers: only these two types can be read back
	// from a summary's location.
	var sum struct {
		Target backup.SummaryTarget `json:"target"`
	}
	if json.Unmarshal(run.Summary, &sum) != nil || !ingestID.MatchString(run.JobID) {
		return targets.RunTarget{}, false
	}
	switch sum.Target.Type {
	case localdir.Type:
		// run_dir is <base_dir>/<job_id>/<run_id>.
		dir := filepath.Clean(sum.Target.RunDir)
		if filepath.Base(dir) != run.ID || filepath.Base(filepath.Dir(dir)) != run.JobID {
			return targets.RunTarget{}, false
		}
		return ingestTarget(agentID, localdir.Redact(filepath.Dir(filepath.Dir(dir))))
	case webdav.Type:
		// run_url is <base_url>/<job_id>/<run_id>/; both ids are URL-safe (checked above).
		base, ok := strings.CutSuffix(sum.Target.RunURL, "/"+run.JobID+"/"+run.ID+"/")
		if !ok {
			return targets.RunTarget{}, false
		}
		secret := ""
		if spec, err := jobspec.ParseAndValidate([]byte(job.SpecJSON)); err == nil && spec.Target.Type == webdav.Type &&
			strings.TrimSuffix(spec.Target.Config.Endpoint(), "/") == base {
			secret = spec.Target.SecretName()
		}
		return ingestTarget(agentID, webdav.Redact(base+"/", secret))
	}
	return targets.RunTarget{}, false
}

// validSummaryErrorCode: summary.error_code, when present, is a code (see summaryErrorCode).
func validSummaryErrorCode(summary json.RawMessage) bool {
	_, ok := summaryErrorCode(summary)
	return ok
}

// validIngestTarget: an uploaded run's target is one ingestTarget accepts.
func validIngestTarget(t targets.Redacted) bool {
	_, ok := ingestTarget("", t)
	return ok
}

// ingestTarget accepts the targets a valid job spec can name (an absolute local directory
// without "..", an http(s) URL without credentials, query or fragment), re-encoded by its driver
// so that nothing else the agent sent is stored. The secret name may be missing: the agent may
// not know it.
func ingestTarget(agentID string, t targets.Redacted) (targets.RunTarget, bool) {
	if len(t.JSON()) > 8192 || len(t.SecretName) > maxIngestID {
		return targets.RunTarget{}, false
	}
	cfg, err := all.Registry.ParseRedacted(t)
	if err != nil {
		return targets.RunTarget{}, false
	}
	if err := cfg.Validate(); err != nil {
		var fe *targets.FieldError
		if !errors.As(err, &fe) || fe.Field != "secret_name" || cfg.SecretName() != "" {
			return targets.RunTarget{}, false
		}
	}
	if lp, ok := cfg.(targets.LocalPath); ok && slices.Contains(strings.Split(filepath.ToSlash(lp.LocalPath()), "/"), "..") {
		return targets.RunTarget{}, false
	}
	if ep := cfg.Endpoint(); ep != "" {
		u, err := url.Parse(ep)
		if err != nil || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return targets.RunTarget{}, false
		}
	}
	return targets.RunTarget{NodeID: agentID, Target: cfg.Redact()}, true
}
