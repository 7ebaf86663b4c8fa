package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/snapshots"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Preview lists are capped; the totals say how many there are.
const (
	previewKeepLimit   = 100
	previewDeleteLimit = 200
)

func (s *Server) retentionRoutes(r chi.Router) {
	r.Get("/jobs/{id}/retention", s.getRetention)
	r.Put("/jobs/{id}/retention", s.putRetention)
	r.Post("/jobs/{id}/retention/preview", s.previewRetention)
	r.Post("/jobs/{id}/retention/apply", s.applyRetention)
}

// withRetention returns the job's spec with its "retention" replaced by raw (the client's object,
// so that defaults and validation are exactly those of a whole spec), parsed and validated.
func withRetention(specJSON string, raw json.RawMessage) ([]byte, *jobspec.Spec, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, nil, respond.BadRequest("invalid_retention", "retention must be a JSON object").Field("retention")
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(specJSON), &doc); err != nil {
		return nil, nil, errors.New("the stored job spec is not a JSON object")
	}
	doc["retention"] = trimmed
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, err
	}
	spec, err := jobspec.ParseAndValidate(out)
	if err != nil {
		var je *jobspec.Error
		if errors.As(err, &je) {
			return nil, nil, respond.BadRequest("invalid_retention", je.Message).Reason(je.Reason).Field(je.Field)
		}
		return nil, nil, respond.BadRequest("invalid_retention", "retention is not valid")
	}
	return out, spec, nil
}

func (s *Server) jobSpecFor(w http.ResponseWriter, r *http.Request) (storage.Job, *jobspec.Spec, bool) {
	job, ok := s.jobFor(w, r)
	if !ok {
		return job, nil, false
	}
	spec, err := jobspec.Parse([]byte(job.SpecJSON))
	if err != nil {
		respond.Error(w, r, respond.New(http.StatusInternalServerError, "invalid_spec", "the job's stored spec cannot be read").Cause(err))
		return job, nil, false
	}
	return job, spec, true
}

func (s *Server) getRetention(w http.ResponseWriter, r *http.Request) {
	_, spec, ok := s.jobSpecFor(w, r)
	if !ok {
		return
	}
	respond.JSON(w, http.StatusOK, spec.Retention)
}

func (s *Server) putRetention(w http.ResponseWriter, r *http.Request) {
	job, ok := s.jobFor(w, r)
	if !ok {
		return
	}
	var raw json.RawMessage
	if err := respond.DecodeJSON(r, &raw); err != nil {
		respond.Error(w, r, err)
		return
	}
	ctx := r.Context()
	err := s.db.Write(ctx, func(q storage.Q) error {
		j, err := q.GetJob(ctx, job.ID) // again inside the transaction: a concurrent edit is not lost
		if err != nil {
			return err
		}
		out, _, err := withRetention(j.SpecJSON, raw)
		if err != nil {
			return err
		}
		j.SpecJSON, j.UpdatedAt = string(out), s.now().Unix()
		return q.UpdateJob(ctx, j)
	})
	if err != nil {
		respond.Error(w, r, jobError(err))
		return
	}
	// 204 as in the original, whose client reads no body; GET returns the saved policy.
	w.WriteHeader(http.StatusNoContent)
}

type retentionBody struct {
	Retention json.RawMessage `json:"retention"`
}

// retentionPolicy loads the job of a preview or apply request and the policy it runs with: the
// optional {retention} body, else the job's own policy.
func (s *Server) retentionPolicy(w http.ResponseWriter, r *http.Request) (storage.Job, *jobspec.Retention, bool) {
	job, spec, ok := s.jobSpecFor(w, r)
	if !ok {
		return job, nil, false
	}
	var b retentionBody
	if err := decodeOptionalJSON(r, &b); err != nil {
		respond.Error(w, r, err)
		return job, nil, false
	}
	if len(b.Retention) == 0 || string(bytes.TrimSpace(b.Retention)) == "null" {
		return job, &spec.Retention, true
	}
	_, override, err := withRetention(job.SpecJSON, b.Retention)
	if err != nil {
		respond.Error(w, r, err)
		return job, nil, false
	}
	return job, &override.Retention, true
}

type previewItem struct {
	RunID         string   `json:"run_id"`
	EndedAt       int64    `json:"ended_at"`
	Pinned        bool     `json:"pinned"`
	SourceBytes   *int64   `json:"source_bytes,omitempty"`
	TransferBytes *int64   `json:"transfer_bytes,omitempty"`
	Reasons       []string `json:"reasons"`
	// Details say, rule by rule, why the snapshot is kept or why it would go (Go addition).
	Details []snapshots.Detail `json:"details"`
}

type previewResponse struct {
	Retention       jobspec.Retention `json:"retention"`
	KeepTotal       int               `json:"keep_total"`
	DeleteTotal     int               `json:"delete_total"`
	Keep            []previewItem     `json:"keep"`
	Delete          []previewItem     `json:"delete"`
	ScanTruncated   bool              `json:"scan_truncated"`
	ResultTruncated bool              `json:"result_truncated"`
}

func (s *Server) previewRetention(w http.ResponseWriter, r *http.Request) {
	job, pol, ok := s.retentionPolicy(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	plan, err := s.cfg.Snapshots.Preview(ctx, job.ID, pol)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	cands, err := s.db.Reader().ListRetentionCandidates(ctx, job.ID, snapshots.MaxRetentionCandidates+1)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	byID := make(map[string]storage.RunArtifact, len(cands))
	for _, a := range cands {
		byID[a.RunID] = a
	}
	items := func(ds []snapshots.Decision, limit int) []previewItem {
		out := make([]previewItem, 0, min(len(ds), limit))
		for _, d := range ds {
			if len(out) == limit {
				break
			}
			a := byID[d.RunID]
			out = append(out, previewItem{RunID: d.RunID, EndedAt: d.EndedAt, Pinned: d.Pinned,
				SourceBytes: a.SourceBytes, TransferBytes: a.TransferBytes, Reasons: d.Reasons, Details: d.Details})
		}
		return out
	}
	resp := previewResponse{Retention: *pol, KeepTotal: len(plan.Keep), DeleteTotal: len(plan.Delete),
		Keep: items(plan.Keep, previewKeepLimit), Delete: items(plan.Delete, previewDeleteLimit),
		ScanTruncated: len(cands) > snapshots.MaxRetentionCandidates}
	resp.ResultTruncated = len(resp.Keep) < resp.KeepTotal || len(resp.Delete) < resp.DeleteTotal
	respond.JSON(w, http.StatusOK, resp)
}

func (s *Server) applyRetention(w http.ResponseWriter, r *http.Request) {
	job, pol, ok := s.retentionPolicy(w, r)
	if !ok {
		return
	}
	if !pol.Enabled {
		respond.Error(w, r, respond.BadRequest("retention_disabled", "retention is disabled for this job; enable it or send an enabled policy"))
		return
	}
	res, err := s.cfg.Snapshots.Apply(r.Context(), job.ID, pol)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, res)
}
