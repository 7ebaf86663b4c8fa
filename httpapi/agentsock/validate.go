package agentsock

import (
	"encoding/json"
	"errors"
	"regexp"
	"time"
)

// Bounds on what agents report. Everything an agent sends is stored and shown; these keep one
// agent from filling the database or the pages with it.
const (
	// MaxEventMessage bounds an event's message, MaxEventFields its fields (JSON).
	MaxEventMessage = 4096
	MaxEventFields  = 16 << 10
	// MaxSummaryBytes bounds a run's or operation's summary. A real one (backup.Summary) is a
	// few hundred bytes plus two paths.
	MaxSummaryBytes = 64 << 10
	// MaxFutureSkew is how far past the Hub's clock an agent-reported time may be: clocks drift,
	// but a time further ahead would sort its run or snapshot above everything for good.
	MaxFutureSkew = 5 * time.Minute
	// refusalBurst bounds the warnings a connection logs a minute about what its agent sent and
	// the Hub refused: an agent must not be able to flood the Hub's log.
	refusalBurst = 10
)

// eventKind: kinds are short identifiers (start, upload, progress_snapshot, hook_failure_ignored).
var eventKind = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// eventLevels are the levels events carry (backup.LevelInfo, LevelWarn, LevelError); none means
// info.
var eventLevels = map[string]bool{"": true, "info": true, "warn": true, "error": true}

var errInvalidEvent = errors.New("event level must be info, warn or error, kind 1 to 64 characters of A-Z a-z 0-9 _ . : -, message at most 4096 bytes and fields a JSON object of at most 16 KiB")

// validEvent is the one check of an event an agent reports, live (run_event, operation_event) or
// uploaded with an offline run.
func validEvent(level, kind, message string, fields json.RawMessage) error {
	if !eventLevels[level] || !eventKind.MatchString(kind) || len(message) > MaxEventMessage || len(fields) > MaxEventFields {
		return errInvalidEvent
	}
	if len(fields) > 0 && string(fields) != "null" {
		var obj map[string]json.RawMessage
		if json.Unmarshal(fields, &obj) != nil {
			return errInvalidEvent
		}
	}
	return nil
}

// errorCodeShape: agents report failures with codes like the Hub's own (agent_failed,
// encryption_key, source_unreadable).
var errorCodeShape = regexp.MustCompile(`^[a-z0-9_.]{1,64}$`)

// summaryErrorCode reads summary.error_code; ok is false when it is present but not a code (not a
// string, or not 1 to 64 characters of a-z 0-9 _ .).
func summaryErrorCode(summary json.RawMessage) (code string, ok bool) {
	var sum struct {
		ErrorCode *json.RawMessage `json:"error_code"`
	}
	if len(summary) == 0 || json.Unmarshal(summary, &sum) != nil || sum.ErrorCode == nil || string(*sum.ErrorCode) == "null" {
		return "", true
	}
	if json.Unmarshal(*sum.ErrorCode, &code) != nil || (code != "" && !errorCodeShape.MatchString(code)) {
		return "", false
	}
	return code, true
}
