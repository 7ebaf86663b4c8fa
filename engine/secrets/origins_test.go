package secrets_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/secrets"
)

func TestNormalizeOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"https://DAV.Example.com/remote.php/dav/", "https://dav.example.com:443"},
		{"HTTP://example.com", "http://example.com:80"},
		{"https://example.com:443", "https://example.com:443"},
		{"https://example.com.:8443/x?y#z", "https://example.com:8443"},
		{"http://user:pw@example.com/", "http://example.com:80"},
		{"http://[::1]:8080/dav", "http://[::1]:8080"},
		{"http://127.0.0.1:0080/", "http://127.0.0.1:80"},
		{" https://a.b ", "https://a.b:443"},
	} {
		got, err := secrets.NormalizeOrigin(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeOrigin(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "ftp://x", "example.com", "https://", "https://x:0", "https://x:70000", "/relative"} {
		if got, err := secrets.NormalizeOrigin(bad); err == nil {
			t.Errorf("NormalizeOrigin(%q) = %q, want an error", bad, got)
		}
	}
}

// An unparsable URL with a password typed into it must not come back in the error, which the
// API answers with.
func TestNormalizeOriginErrorsDoNotRepeatTheURL(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-typed-password"
	for _, bad := range []string{"https://u:" + secret + "@ho st/", "https://u:" + secret + "@%zz/"} {
		_, err := secrets.NormalizeOrigin(bad)
		if err == nil {
			t.Fatalf("NormalizeOrigin(%q) accepted it", bad)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error repeats the password: %v", err)
		}
		if _, err := secrets.NormalizeOrigins("allowed_origins", []string{bad}); err == nil || strings.Contains(err.Error(), secret) {
			t.Fatalf("NormalizeOrigins error repeats the password: %v", err)
		}
	}
}

func TestCheckOrigin(t *testing.T) {
	t.Parallel()
	allowed := []string{"https://dav.example.com", "http://nas.lan:8080"} // as an older row may hold them
	for _, u := range []string{"https://dav.example.com:443/x", "https://DAV.EXAMPLE.COM/", "http://nas.lan:8080/dav"} {
		if err := secrets.CheckOrigin(secrets.KindWebDAV, "n", u, allowed); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{"http://dav.example.com/", "https://dav.example.com:8443/", "https://evil.example/",
		"https://dav.example.com.evil.example/", "http://nas.lan/", "not a url"} {
		var oe *secrets.OriginError
		if err := secrets.CheckOrigin(secrets.KindWebDAV, "n", u, allowed); !errors.As(err, &oe) || oe.Code != secrets.CodeOriginMismatch {
			t.Errorf("%s: %v, want %s", u, err, secrets.CodeOriginMismatch)
		}
	}
	var oe *secrets.OriginError
	if err := secrets.CheckOrigin(secrets.KindWebDAV, "n", "https://dav.example.com/", nil); !errors.As(err, &oe) || oe.Code != secrets.CodeOriginUnbound {
		t.Errorf("unbound: %v", err)
	}
}
