package jobspec

import (
	"encoding/json"
	"testing"
)

// TestTargetsOfEarlierVersionsReadUnchanged feeds job specs as stored before targets became
// drivers through Parse, Validate and MarshalJSON: same target, same secret name, same bytes
// (the target object keeps its field order, part_size_bytes last).
func TestTargetsOfEarlierVersionsReadUnchanged(t *testing.T) {
	t.Parallel()
	const src = `"source":{"paths":["/srv"]}`
	for _, tc := range []struct {
		name, target, wantTarget, wantRedacted, secret string
	}{
		{"LocalDir", `{"type":"local_dir","base_dir":"/bk","part_size_bytes":268435456}`,
			`{"type":"local_dir","base_dir":"/bk","part_size_bytes":268435456}`, `{"type":"local_dir","base_dir":"/bk"}`, ""},
		{"WebDAV", `{"type":"webdav","base_url":"https://dav.example/b/","secret_name":"nas","part_size_bytes":1048576}`,
			`{"type":"webdav","base_url":"https://dav.example/b/","secret_name":"nas","part_size_bytes":1048576}`,
			`{"type":"webdav","base_url":"https://dav.example/b/","secret_name":"nas"}`, "nas"},
		// The one-struct target let other types' fields be empty; they still may.
		{"LocalDirWithEmptyWebDAVFields", `{"type":"local_dir","base_dir":"/bk","base_url":"","secret_name":null}`,
			`{"type":"local_dir","base_dir":"/bk","part_size_bytes":268435456}`, `{"type":"local_dir","base_dir":"/bk"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := `{"v":1,"type":"filesystem",` + src + `,"target":` + tc.target + `}`
			s, err := ParseAndValidate([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(s.Target.Redacted().JSON()); got != tc.wantRedacted {
				t.Errorf("redacted %s, want %s", got, tc.wantRedacted)
			}
			if s.Target.SecretName() != tc.secret {
				t.Errorf("secret %q, want %q", s.Target.SecretName(), tc.secret)
			}
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Target json.RawMessage `json:"target"`
			}
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			if string(out.Target) != tc.wantTarget {
				t.Errorf("re-encoded target %s, want %s", out.Target, tc.wantTarget)
			}
			again, err := ParseAndValidate(b)
			if err != nil || string(again.Target.Redacted().JSON()) != tc.wantRedacted {
				t.Fatalf("re-parsed: %v", err)
			}
		})
	}
}
