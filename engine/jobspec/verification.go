package jobspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/bastion-backup/bastion/engine/schedule"
)

// Drill modes of a job's scheduled verification.
const (
	VerifyModeVerify      = "verify"       // the full verify: restore into scratch, every file against the index
	VerifyModeRestoreTest = "restore_test" // the same, or only sample_files random files plus the largest
)

// DefaultVerifySchedule is the "weekly" drill the UI offers: Sundays at 03:00 in the job's zone.
const DefaultVerifySchedule = "0 3 * * 0"

// MaxSampleFiles bounds sample_files.
const MaxSampleFiles = 100000

// Verification is a job's scheduled verification (restore drill). It lives next to the job's
// backup schedule, not in the spec: it says when to prove the snapshots, not how to make them.
type Verification struct {
	Schedule    string `json:"schedule"`
	Timezone    string `json:"timezone"`
	Mode        string `json:"mode"`
	SampleFiles int    `json:"sample_files,omitempty"` // restore_test only; 0: every file
}

// ParseVerification decodes and validates a job's "verification" object. Absent, null or {} is
// nil (no drills). A missing timezone takes defaultTZ (the job's); a missing mode is "verify".
// Errors are *Error with fields under "verification.".
func ParseVerification(raw json.RawMessage, defaultTZ string) (*Verification, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) || bytes.Equal(t, []byte("{}")) {
		return nil, nil
	}
	var v Verification
	if err := strictDecode(t, &v); err != nil {
		return nil, formatError("verification", err)
	}
	v.Schedule = strings.TrimSpace(v.Schedule)
	v.Timezone = strings.TrimSpace(v.Timezone)
	if v.Timezone == "" {
		v.Timezone = defaultTZ
	}
	if v.Mode == "" {
		v.Mode = VerifyModeVerify
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return &v, nil
}

// Validate checks a decoded Verification.
func (v *Verification) Validate() error {
	if v.Schedule == "" {
		return errorf("verification.schedule", "required", "verification.schedule is required (a cron expression; weekly is %q)", DefaultVerifySchedule)
	}
	loc, err := schedule.LoadLocation(v.Timezone)
	if err != nil {
		return errorf("verification.timezone", "invalid_value", "verification.timezone %q is not an IANA time zone", v.Timezone)
	}
	if _, err := schedule.Parse(v.Schedule, loc); err != nil {
		reason := "invalid_format"
		if errors.Is(err, schedule.ErrNeverFires) {
			reason = "never_fires"
		}
		return errorf("verification.schedule", reason, "verification.schedule: %s", err.Error())
	}
	switch v.Mode {
	case VerifyModeVerify:
		if v.SampleFiles != 0 {
			return errorf("verification.sample_files", "not_allowed", "verification.sample_files applies to mode restore_test only")
		}
	case VerifyModeRestoreTest:
		if v.SampleFiles < 0 || v.SampleFiles > MaxSampleFiles {
			return errorf("verification.sample_files", "out_of_range", "verification.sample_files must be within 0..%d", MaxSampleFiles)
		}
	default:
		return errorf("verification.mode", "invalid_value", "verification.mode must be verify or restore_test")
	}
	return nil
}
