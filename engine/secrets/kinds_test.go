package secrets

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodePayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, kind, raw string
		code, field     string // empty code: valid
	}{
		{"WebDAVOK", KindWebDAV, `{"username":"u","password":"p"}`, "", ""},
		{"WebDAVNoPassword", KindWebDAV, `{"username":"u","password":""}`, "invalid_password", "password"},
		{"WebDAVUnknownField", KindWebDAV, `{"username":"u","password":"p","x":1}`, "invalid_payload", ""},
		{"WebDAVWrongType", KindWebDAV, `{"username":1,"password":"p"}`, "invalid_payload", ""},
		{"WebDAVTrailing", KindWebDAV, `{"username":"u","password":"p"} {}`, "invalid_payload", ""},
		{"WebDAVStrayBrace", KindWebDAV, `{"username":"u","password":"p"}}`, "invalid_payload", ""},
		{"WebDAVStrayBracket", KindWebDAV, `{"username":"u","password":"p"}]`, "invalid_payload", ""},
		{"SMTPOK", KindSMTP, `{"host":"mail","port":25,"username":"","password":"","from":"a@b.c","to":["d@e.f"],"tls":"none"}`, "", ""},
		{"SMTPBadFrom", KindSMTP, `{"host":"mail","port":25,"from":"nope","to":["d@e.f"],"tls":"none"}`, "invalid_from", "from"},
		{"SMTPNoTo", KindSMTP, `{"host":"mail","port":25,"from":"a@b.c","to":[],"tls":"none"}`, "invalid_to", "to"},
		{"SMTPBadTLS", KindSMTP, `{"host":"mail","port":25,"from":"a@b.c","to":["d@e.f"],"tls":"ssl"}`, "invalid_tls", "tls"},
		{"SMTPUserNoPassword", KindSMTP, `{"host":"mail","port":25,"username":"u","from":"a@b.c","to":["d@e.f"],"tls":"none"}`, "invalid_password", "password"},
		{"SMTPCACertNeedsTLS", KindSMTP, `{"host":"mail","port":25,"from":"a@b.c","to":["d@e.f"],"tls":"none","ca_cert":"x"}`, "invalid_ca_cert", "ca_cert"},
		{"SMTPCACertNotPEM", KindSMTP, `{"host":"mail","port":25,"from":"a@b.c","to":["d@e.f"],"tls":"starttls","ca_cert":"not a cert"}`, "invalid_ca_cert", "ca_cert"},
		{"SMTPPortZero", KindSMTP, `{"host":"mail","port":0,"from":"a@b.c","to":["d@e.f"],"tls":"none"}`, "invalid_port", "port"},
		{"WeComOK", KindWeComBot, `{"webhook_url":"https://qyapi.example/cgi-bin/webhook/send?key=k"}`, "", ""},
		{"WeComFTP", KindWeComBot, `{"webhook_url":"ftp://x/y"}`, "invalid_webhook_url", "webhook_url"},
		{"WebhookUserinfo", KindWebhook, `{"url":"https://user:pw@hooks.example/x"}`, "invalid_webhook_url", "url"},
		{"UnknownKind", "ftp", `{}`, "invalid_kind", "kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodePayload(tc.kind, []byte(tc.raw))
			if tc.code == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			if ve.Code != tc.code || ve.Field != tc.field {
				t.Fatalf("code/field = %s/%s, want %s/%s (%s)", ve.Code, ve.Field, tc.code, tc.field, ve.Message)
			}
		})
	}
}

func TestValidationErrorsNeverEchoSecrets(t *testing.T) {
	t.Parallel()
	const pw = "hunter2-very-secret"
	for _, raw := range []string{
		`{"username":"u","password":"` + pw + `","extra":"` + pw + `"}`,
		`{"username":"u","password":"` + pw + `"`,
		`{"username":["` + pw + `"],"password":"x"}`,
	} {
		_, err := DecodePayload(KindWebDAV, []byte(raw))
		if err == nil {
			t.Fatalf("payload %q accepted", raw)
		}
		if strings.Contains(err.Error(), pw) {
			t.Fatalf("error %q echoes the secret", err)
		}
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"nas", "offsite backup", "家里的NAS", "a.b-c_d"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "  ", " lead", "a/b", `a\b`, "..", "tab\there", "nul\x00", "bad\xff", "nas\u202etxt.exe", "zero\u200bwidth", strings.Repeat("x", MaxNameLen+1)} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) accepted", bad)
		}
	}
}
