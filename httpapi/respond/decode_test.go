package respond_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

type probeBody struct {
	Name    string   `json:"name"`
	Count   int64    `json:"count"`
	Enabled *bool    `json:"enabled"`
	Tags    []string `json:"tags"`
	Nested  struct {
		Ratio float64 `json:"ratio"`
	} `json:"nested"`
}

// TestDecodeJSONWrongTypes: a body or field of the wrong JSON type is a 400 invalid_json that
// says which JSON was expected, never a Go type name.
func TestDecodeJSONWrongTypes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, field, want string
	}{
		{"Array", `[]`, "", "expected a JSON object"},
		{"ArrayOfObjects", `[{"name":"x"}]`, "", "expected a JSON object"},
		{"String", `"x"`, "", "expected a JSON object"},
		{"Number", `1`, "", "expected a JSON object"},
		{"Bool", `true`, "", "expected a JSON object"},
		{"FieldString", `{"name":1}`, "name", `field "name" must be a JSON string`},
		{"FieldNumber", `{"count":"1"}`, "count", `field "count" must be a whole number in range`},
		{"FieldOverflow", `{"count":1e30}`, "count", `field "count" must be a whole number in range`},
		{"FieldBool", `{"enabled":"yes"}`, "enabled", `field "enabled" must be true or false`},
		{"FieldArray", `{"tags":"a"}`, "tags", `field "tags" must be a JSON array`},
		{"NestedObject", `{"nested":[]}`, "nested", `field "nested" must be a JSON object`},
		{"NestedNumber", `{"nested":{"ratio":"x"}}`, "nested.ratio", `field "nested.ratio" must be a number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/api/x", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/json")
			var v probeBody
			err := respond.DecodeJSON(r, &v)
			var e *respond.APIError
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != "invalid_json" {
				t.Fatalf("DecodeJSON(%s) = %v, want 400 invalid_json", tc.body, err)
			}
			if e.Message != tc.want || e.Details == nil || e.Details.Reason != "wrong_type" || e.Details.Field != tc.field {
				t.Fatalf("DecodeJSON(%s) = %q %+v, want %q field %q", tc.body, e.Message, e.Details, tc.want, tc.field)
			}
			w := httptest.NewRecorder()
			respond.Error(w, r, err)
			out := w.Body.String()
			for _, goName := range []string{"probeBody", "respond_test", "struct", "int64", "[]string", "*bool", "float64"} {
				if strings.Contains(out, goName) {
					t.Fatalf("answer names a Go type (%s): %s", goName, out)
				}
			}
			if !json.Valid([]byte(out)) {
				t.Fatalf("answer is not JSON: %s", out)
			}
		})
	}
}
