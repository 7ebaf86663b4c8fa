// Package respond writes JSON answers and the error envelope {error, message, details?, request_id}
// that every API failure uses, and logs each failure once with the request's ID.
package respond

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/storage"
)

// JSON writes v with status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v) // the client went away; nothing useful to do
	}
}

// NoContent writes 204.
func NoContent(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }

// Details are the optional structured parts of an error.
type Details struct {
	Reason     string         `json:"reason,omitempty"`
	Field      string         `json:"field,omitempty"`
	Params     map[string]any `json:"params,omitempty"`
	Violations []Violation    `json:"violations,omitempty"`
	Debug      string         `json:"debug,omitempty"`
}

// Violation is one of several field problems.
type Violation struct {
	Field  string         `json:"field"`
	Reason string         `json:"reason"`
	Params map[string]any `json:"params,omitempty"`
}

// APIError is an API error: what the client sees (Status, Code, Message, Details) and, in Err, the
// cause that only the log sees.
type APIError struct {
	Status  int
	Code    string
	Message string
	Details *Details
	Err     error
}

func (e *APIError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *APIError) Unwrap() error { return e.Err }

// New builds an error with a status, stable code and human message.
func New(status int, code, message string) *APIError {
	return &APIError{Status: status, Code: code, Message: message}
}

func BadRequest(code, message string) *APIError { return New(http.StatusBadRequest, code, message) }
func Unauthorized(code, message string) *APIError {
	return New(http.StatusUnauthorized, code, message)
}
func Forbidden(code, message string) *APIError { return New(http.StatusForbidden, code, message) }
func NotFound(code, message string) *APIError  { return New(http.StatusNotFound, code, message) }
func Conflict(code, message string) *APIError  { return New(http.StatusConflict, code, message) }

// Reason, Field and Param fill in details; they return e for chaining.
func (e *APIError) Reason(r string) *APIError { e.details().Reason = r; return e }
func (e *APIError) Field(f string) *APIError  { e.details().Field = f; return e }
func (e *APIError) Param(k string, v any) *APIError {
	d := e.details()
	if d.Params == nil {
		d.Params = map[string]any{}
	}
	d.Params[k] = v
	return e
}

// Cause attaches an internal error for the log.
func (e *APIError) Cause(err error) *APIError { e.Err = err; return e }

func (e *APIError) details() *Details {
	if e.Details == nil {
		e.Details = &Details{}
	}
	return e.Details
}

type envelope struct {
	Error     string   `json:"error"`
	Message   string   `json:"message"`
	Details   *Details `json:"details,omitempty"`
	RequestID string   `json:"request_id,omitempty"`
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	debugErrorsKey
)

// WithRequestID stores the request ID that error envelopes carry.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestID returns the request ID stored by WithRequestID, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// WithDebugErrors makes Error put the internal cause of 500s in details.debug (--debug-errors).
func WithDebugErrors(ctx context.Context) context.Context {
	return context.WithValue(ctx, debugErrorsKey, true)
}

// Error writes err as the envelope. A *APIError is sent as built; otherwise the error is classified:
// body read deadline passed → 408 request_timeout (and the connection is closed), permission
// denied → 403 permission_denied, missing path → 404 path_not_found, storage.ErrNotFound
// → 404 not_found, request body too large → 413 payload_too_large, anything else → 500
// internal_error. 5xx are logged with the cause: 502 and 504 (a receiver, agent or target upstream
// refused or did not answer: nothing wrong with this Hub) at warn level, the others at error level;
// 4xx at debug.
func Error(w http.ResponseWriter, r *http.Request, err error) {
	var e *APIError
	if !errors.As(err, &e) {
		e = classify(err)
	}
	if e.Status == http.StatusRequestTimeout {
		// The client could not send its body in time: do not wait for the rest of it.
		w.Header().Set("Connection", "close")
	}
	log := zerolog.Ctx(r.Context())
	if e.Status >= 500 {
		level := zerolog.ErrorLevel
		if e.Status == http.StatusBadGateway || e.Status == http.StatusGatewayTimeout {
			level = zerolog.WarnLevel
		}
		log.WithLevel(level).Err(err).Str("error_code", e.Code).Int("status", e.Status).Msg("request failed")
		if debug, _ := r.Context().Value(debugErrorsKey).(bool); debug && e.Err != nil {
			e.details().Debug = e.Err.Error()
		}
	} else {
		log.Debug().Str("error_code", e.Code).Int("status", e.Status).Msg("request rejected")
	}
	JSON(w, e.Status, envelope{Error: e.Code, Message: e.Message, Details: e.Details, RequestID: RequestID(r.Context())})
}

// ErrBodyReadTimeout is what reading a request body returns once the Hub's body read deadline
// has passed (middleware.BodyDeadline).
var ErrBodyReadTimeout = errors.New("request body read deadline exceeded")

func classify(err error) *APIError {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return New(http.StatusRequestEntityTooLarge, "payload_too_large", "request body is too large").
			Param("max_bytes", tooLarge.Limit)
	case errors.Is(err, ErrBodyReadTimeout):
		return New(http.StatusRequestTimeout, "request_timeout", "the request body was not received in time")
	case errors.Is(err, fs.ErrPermission):
		return New(http.StatusForbidden, "permission_denied", "permission denied").Cause(err)
	case errors.Is(err, fs.ErrNotExist):
		return New(http.StatusNotFound, "path_not_found", "path not found").Cause(err)
	case errors.Is(err, storage.ErrNotFound):
		return New(http.StatusNotFound, "not_found", "not found").Cause(err)
	}
	return New(http.StatusInternalServerError, "internal_error", "internal error").Cause(err)
}
