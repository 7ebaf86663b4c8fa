package secrets

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

var fuzzKinds = []string{KindWebDAV, KindSMTP, KindWeComBot, KindWebhook, KindBackupAgeIdentity, "ftp"}

// FuzzDecodePayload feeds any bytes to every kind: no panic; every refusal is a
// *ValidationError with a code and a message that does not quote a credential; every accepted
// payload survives a round trip (what the Hub stores decodes to the same value).
func FuzzDecodePayload(f *testing.F) {
	for _, seed := range []string{
		`{"username":"u","password":"p"}`,
		`{"username":"u:x","password":"p"}`,
		`{"username":"u","password":"p","x":1}`,
		`{"username":1,"password":"hunter2-secret"}`,
		`{"username":"u","password":"p"} {}`,
		`{"host":"mail","port":25,"username":"","password":"","from":"a@b.c","to":["d@e.f"],"tls":"none"}`,
		`{"host":"mail","port":70000,"from":"Alice <a@b.c>","to":["d@e.f","x"],"tls":"starttls"}`,
		`{"webhook_url":"https://qyapi.example/cgi-bin/webhook/send?key=k"}`,
		`{"url":"https://user:hunter2-secret@hooks.example/x","secret":"s"}`,
		`{"url":"http://[::1]:80/x"}`,
		`null`, `[]`, `"x"`, ``, `{`,
	} {
		for i := range fuzzKinds {
			f.Add(uint8(i), []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, k uint8, raw []byte) {
		kind := fuzzKinds[int(k)%len(fuzzKinds)]
		v, err := DecodePayload(kind, raw)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Code == "" || ve.Message == "" {
				t.Fatalf("refusal is not a complete ValidationError: %#v", err)
			}
			for _, s := range credentialValues(raw) {
				if strings.Contains(ve.Message, s) && !strings.Contains(string(raw), `"`+s+`":`) {
					t.Fatalf("message %q quotes the credential %q", ve.Message, s)
				}
			}
			return
		}
		stored, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted payload does not marshal: %v", err)
		}
		again, err := DecodePayload(kind, stored)
		if err != nil {
			t.Fatalf("stored form %s of accepted %q is refused: %v", stored, raw, err)
		}
		if !reflect.DeepEqual(v, again) {
			t.Fatalf("round trip changed the payload: %#v → %#v", v, again)
		}
	})
}

// credentialValues are the string values of credential fields in raw, when it is an object.
func credentialValues(raw []byte) []string {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	var out []string
	for _, k := range []string{"password", "secret", "webhook_url", "url"} {
		if s, ok := m[k].(string); ok && len(s) >= 6 {
			out = append(out, s)
		}
	}
	return out
}

// FuzzValidateName checks that an accepted name is safe to use as a path segment and a log
// field, and that a refused one gets invalid_name.
func FuzzValidateName(f *testing.F) {
	for _, seed := range []string{"nas", "my nas", " nas", "nas ", "a/b", `a\b`, ".", "..", "...", "",
		"\x00", "tab\there", "é", "\xff", strings.Repeat("a", 128), strings.Repeat("a", 129), "\u202e", "line\nbreak"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Code != "invalid_name" || ve.Field != "name" {
				t.Fatalf("refusal of %q: %#v", name, err)
			}
			return
		}
		switch {
		case name == "" || strings.TrimSpace(name) != name:
			t.Fatalf("accepted %q: empty or padded", name)
		case len(name) > MaxNameLen || !utf8.ValidString(name):
			t.Fatalf("accepted %q: too long or not UTF-8", name)
		case strings.ContainsAny(name, `/\`) || name == "." || name == "..":
			t.Fatalf("accepted %q: a path separator or dot name", name)
		case strings.IndexFunc(name, unicode.IsControl) >= 0:
			t.Fatalf("accepted %q: a control character", name)
		}
	})
}
