package respond

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
)

// DecodeJSON reads the request body as one JSON object into v, rejecting unknown fields, trailing
// data and wrong types with a 400 invalid_json that names the problem but never echoes the input
// (bodies may carry passwords). An oversized body is a 413, a body sent with another Content-Type
// than application/json a 415 (an empty body without a Content-Type is the 400 "empty"), a body
// not received before the read deadline a 408.
func DecodeJSON(r *http.Request, v any) error {
	if err := CheckJSONContentType(r); err != nil {
		return err
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) || errors.Is(err, ErrBodyReadTimeout) {
			return decodeError(err)
		}
		return BadRequest("invalid_json", "request body has data after the JSON value").Reason("trailing_data")
	}
	return nil
}

func decodeError(err error) error {
	var tooLarge *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge), errors.Is(err, ErrBodyReadTimeout):
		return err // classified as 413 or 408 by Error
	case errors.Is(err, io.EOF):
		return BadRequest("invalid_json", "request body is empty").Reason("empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("invalid_json", "request body is truncated JSON").Reason("syntax")
	case errors.As(err, &syn):
		return BadRequest("invalid_json", fmt.Sprintf("request body is not valid JSON (at byte %d)", syn.Offset)).Reason("syntax")
	case errors.As(err, &typ):
		// Say what JSON was expected, never the Go type (an internal name like httpapi.jobBody).
		want := jsonKind(typ.Type)
		if typ.Field == "" {
			return BadRequest("invalid_json", "expected "+want).Reason("wrong_type").Param("expected", want)
		}
		return BadRequest("invalid_json", fmt.Sprintf("field %q must be %s", typ.Field, want)).
			Reason("wrong_type").Field(typ.Field).Param("expected", want)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return BadRequest("invalid_json", fmt.Sprintf("unknown field %q", name)).Reason("unknown_field").Field(name)
	}
	return BadRequest("invalid_json", "request body is not valid JSON").Reason("syntax")
}

// CheckJSONContentType refuses with a 415 a request that carries a body (or names a
// Content-Type) other than application/json; for handlers that read the body themselves.
func CheckJSONContentType(r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); (ct != "" || r.ContentLength != 0) && !IsJSONContentType(ct) {
		return New(http.StatusUnsupportedMediaType, "unsupported_media_type", "request body must be JSON sent with Content-Type: application/json")
	}
	return nil
}

// IsJSONContentType reports whether a Content-Type header value is application/json, with or
// without parameters (charset).
func IsJSONContentType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// jsonKind names the JSON value that decodes into t, for error messages.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a different JSON value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	case reflect.Slice, reflect.Array:
		return "a JSON array"
	case reflect.String:
		return "a JSON string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a whole number in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a different JSON value"
}
