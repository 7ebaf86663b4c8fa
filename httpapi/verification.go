package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// JobDrills is the drill service (engine/drills) as the jobs API uses it.
type JobDrills interface {
	// JobChanged re-reads a job's drill schedule.
	JobChanged(jobID string)
	// Request queues a drill of the job now; ErrDrillJobArchived and ErrDrillNoSnapshot (matched
	// with errors.Is through DrillErrors) refuse it.
	Request(ctx context.Context, jobID string) error
}

// DrillErrors lets the API tell the drill service's refusals apart without importing it.
type DrillErrors struct {
	JobArchived error
	NoSnapshot  error
}

// Drill settings bounds.
const (
	defaultStaleAfterDays = 30
	maxStaleAfterDays     = 3650
)

// verificationSettings is settings key "verification".
type verificationSettings struct {
	// StaleAfterDays flags a job whose snapshots were not proven for longer than this.
	StaleAfterDays int `json:"stale_after_days"`
}

func (s *Server) verificationSettings(ctx context.Context, q storage.Q) (verificationSettings, error) {
	out := verificationSettings{StaleAfterDays: defaultStaleAfterDays}
	raw, err := q.GetSetting(ctx, storage.SettingVerification)
	if errors.Is(err, storage.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	if json.Unmarshal([]byte(raw), &out) != nil || out.StaleAfterDays < 1 {
		zerolog.Ctx(ctx).Warn().Msg("stored verification settings are unreadable; using the defaults")
		out.StaleAfterDays = defaultStaleAfterDays
	}
	return out, nil
}

// verificationRoutes: the drill settings and "run drill now".
func (s *Server) verificationRoutes(r chi.Router) {
	r.Get("/settings/verification", s.getVerificationSettings)
	r.Put("/settings/verification", s.putVerificationSettings)
	if s.cfg.Drills != nil {
		r.Post("/jobs/{id}/verify", s.verifyJobNow)
	}
}

func (s *Server) getVerificationSettings(w http.ResponseWriter, r *http.Request) {
	v, err := s.verificationSettings(r.Context(), s.db.Reader())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, v)
}

func (s *Server) putVerificationSettings(w http.ResponseWriter, r *http.Request) {
	var v verificationSettings
	if err := respond.DecodeJSON(r, &v); err != nil {
		respond.Error(w, r, err)
		return
	}
	if v.StaleAfterDays < 1 || v.StaleAfterDays > maxStaleAfterDays {
		respond.Error(w, r, respond.BadRequest("invalid_stale_after_days",
			fmt.Sprintf("stale_after_days must be a whole number from 1 to %d", maxStaleAfterDays)).
			Reason("out_of_range").Field("stale_after_days").Param("max", maxStaleAfterDays))
		return
	}
	b, _ := json.Marshal(v)
	if err := s.db.Writer().PutSetting(r.Context(), storage.SettingVerification, string(b), s.now().Unix()); err != nil {
		respond.Error(w, r, err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Int("stale_after_days", v.StaleAfterDays).Msg("verification settings saved")
	respond.JSON(w, http.StatusOK, v)
}

// verifyJobNow answers POST /api/jobs/{id}/verify: a drill of the job's latest snapshot, in the
// job's verification mode (verify when it has none), queued to start as soon as no backup of the
// job runs and its target has a free drill slot.
func (s *Server) verifyJobNow(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	err := s.cfg.Drills.Request(r.Context(), id)
	de := s.cfg.DrillErrors
	switch {
	case err == nil:
	case de.JobArchived != nil && errors.Is(err, de.JobArchived):
		respond.Error(w, r, respond.Conflict("job_archived", "the job is archived; unarchive it to verify it"))
		return
	case de.NoSnapshot != nil && errors.Is(err, de.NoSnapshot):
		respond.Error(w, r, respond.Conflict("no_snapshot", "the job has no snapshot to verify yet; run a backup first"))
		return
	default:
		respond.Error(w, r, jobError(err))
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("job_id", id).Msg("drill requested")
	respond.JSON(w, http.StatusAccepted, map[string]string{"status": "pending"})
}

// jobVerificationJSON are the drill fields of a job.
type jobVerificationJSON struct {
	Verification      *jobspec.Verification `json:"verification"`
	LastVerifiedAt    *int64                `json:"last_verified_at"`
	LastVerifyStatus  *string               `json:"last_verify_status"`
	LastVerifyOpID    *string               `json:"last_verify_op_id"`
	LastProvenAt      *int64                `json:"last_proven_at"`
	VerifyPendingAt   *int64                `json:"verify_pending_at"`
	VerifyRunningOpID *string               `json:"verify_running_op_id"`
	// VerifyOverdue: never proven, or not proven for longer than the stale_after_days setting.
	VerifyOverdue bool `json:"verify_overdue"`
}

func verificationOut(v *storage.JobVerification, staleAfterDays int, now int64) jobVerificationJSON {
	out := jobVerificationJSON{VerifyOverdue: true}
	if v == nil {
		return out
	}
	if v.ConfigJSON != nil {
		var cfg jobspec.Verification
		if json.Unmarshal([]byte(*v.ConfigJSON), &cfg) == nil {
			out.Verification = &cfg
		}
	}
	out.LastVerifiedAt, out.LastVerifyStatus, out.LastVerifyOpID = v.LastVerifiedAt, v.LastVerifyStatus, v.LastVerifyOpID
	out.LastProvenAt, out.VerifyPendingAt, out.VerifyRunningOpID = v.LastProvenAt, v.PendingAt, v.RunningOpID
	out.VerifyOverdue = v.LastProvenAt == nil || now-*v.LastProvenAt > int64(staleAfterDays)*86400
	return out
}

// jobsVerification reads the drill rows and the stale threshold for jobs of a response.
func (s *Server) jobsVerification(ctx context.Context, ids []string) (map[string]storage.JobVerification, int, error) {
	var rows map[string]storage.JobVerification
	var set verificationSettings
	err := s.db.Read(ctx, func(q storage.Q) error {
		var err error
		if rows, err = q.ListJobVerifications(ctx, ids); err != nil {
			return err
		}
		set, err = s.verificationSettings(ctx, q)
		return err
	})
	return rows, set.StaleAfterDays, err
}

// dashboardVerification is the dashboard's drill summary.
type dashboardVerification struct {
	StaleAfterDays int                    `json:"stale_after_days"`
	Jobs           int64                  `json:"jobs"`
	NeverProven    int64                  `json:"never_proven"`
	Stale          int64                  `json:"stale"`
	LastFailed     int64                  `json:"last_failed"`
	Unproven       []dashboardUnprovenJob `json:"unproven"`
}

type dashboardUnprovenJob struct {
	JobID            string  `json:"job_id"`
	JobName          string  `json:"job_name"`
	LastProvenAt     *int64  `json:"last_proven_at"`
	LastVerifyStatus *string `json:"last_verify_status"`
	LastVerifiedAt   *int64  `json:"last_verified_at"`
}

func (s *Server) dashboardVerificationData(ctx context.Context, q storage.Q, now int64) (dashboardVerification, error) {
	set, err := s.verificationSettings(ctx, q)
	if err != nil {
		return dashboardVerification{}, err
	}
	before := now - int64(set.StaleAfterDays)*86400
	h, err := q.CountVerificationHealth(ctx, before)
	if err != nil {
		return dashboardVerification{}, err
	}
	list, err := q.ListUnprovenJobs(ctx, before, dashboardListLimit)
	if err != nil {
		return dashboardVerification{}, err
	}
	out := dashboardVerification{StaleAfterDays: set.StaleAfterDays, Jobs: h.Jobs, NeverProven: h.NeverProven,
		Stale: h.Stale, LastFailed: h.LastFailed, Unproven: make([]dashboardUnprovenJob, 0, len(list))}
	for _, u := range list {
		out.Unproven = append(out.Unproven, dashboardUnprovenJob{JobID: u.JobID, JobName: u.JobName,
			LastProvenAt: u.LastProvenAt, LastVerifyStatus: u.LastVerifyStatus, LastVerifiedAt: u.LastVerifiedAt})
	}
	return out, nil
}
