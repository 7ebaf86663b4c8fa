package targets_test

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/targets"
)

func TestValidateName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"payload.part000001", "entries.jsonl.zst", "manifest.json", "données 🎉", "..hidden", "a..b", "partial", strings.Repeat("n", targets.MaxNameLen)} {
		if err := targets.ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", `a\b`, "/abs", "x.partial", "bad\xffutf8", "new\nline", "del\x7f", strings.Repeat("n", targets.MaxNameLen+1)} {
		if err := targets.ValidateName(bad); !errors.Is(err, targets.ErrInvalidPath) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidPath", bad, err)
		}
	}
}

func TestValidateDataName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"data/a", "data/a/b/c.txt", "data/x.partial", "data/..hidden/.x", targets.DataName("srv/ü 1")} {
		if err := targets.ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"data/", "data", "data//a", "data/a/", "data/../x", "data/a/./b", "data/a/../b", `data/a\b`, "data/a\x00", "data/new\nline", "dat/a", "a/data/b"} {
		if err := targets.ValidateName(bad); !errors.Is(err, targets.ErrInvalidPath) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidPath", bad, err)
		}
	}
}

func TestValidateRun(t *testing.T) {
	t.Parallel()
	const id = "0b6f7c52-9a3e-4d8e-8a51-3f0f3a1c2b7d"
	for _, ok := range []targets.RunRef{{JobID: id, RunID: id}, {JobID: "job_1", RunID: "RUN-2"}} {
		if err := targets.ValidateRun(ok); err != nil {
			t.Errorf("ValidateRun(%+v) = %v", ok, err)
		}
	}
	for _, bad := range []targets.RunRef{{JobID: "", RunID: id}, {JobID: id, RunID: ".."}, {JobID: "a.b", RunID: id}, {JobID: id, RunID: "é"}, {JobID: strings.Repeat("a", targets.MaxIDLen+1), RunID: id}} {
		if err := targets.ValidateRun(bad); !errors.Is(err, targets.ErrInvalidPath) {
			t.Errorf("ValidateRun(%+v) = %v, want ErrInvalidPath", bad, err)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	err := &targets.Error{Kind: targets.KindRateLimited, Code: "webdav_rate_limited", Op: "put x", Err: errors.New("429")}
	if got := err.Error(); got != "put x: webdav_rate_limited: 429" {
		t.Errorf("Error() = %q", got)
	}
	if !targets.Retriable(targets.KindOf(err)) || targets.Retriable(targets.KindAuth) || targets.Retriable(targets.KindNotFound) {
		t.Error("Retriable is wrong")
	}
	if targets.KindOf(errors.New("plain")) != targets.KindUnknown {
		t.Error("KindOf of a plain error")
	}
}

func TestDecodeConfigRefusesTrailingData(t *testing.T) {
	t.Parallel()
	var v struct {
		Type string `json:"type"`
	}
	if err := targets.DecodeConfig("local_dir", json.RawMessage(`{"type":"local_dir"}`), &v); err != nil || v.Type != "local_dir" {
		t.Fatalf("DecodeConfig = %v (%+v)", err, v)
	}
	for _, trail := range []string{" {}", "}", "]", " 1"} {
		err := targets.DecodeConfig("local_dir", json.RawMessage(`{"type":"local_dir"}`+trail), &v)
		var fe *targets.FieldError
		if !errors.As(err, &fe) || fe.Reason != "invalid_format" {
			t.Fatalf("config followed by %q: error %v, want an invalid_format FieldError", trail, err)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestTransportKind(t *testing.T) {
	t.Parallel()
	const secretURL = "https://user:pw@dav.example/base?token=secret"
	for _, tc := range []struct {
		name, kind, prefix string
		err                error
	}{
		{"UnknownAuthority", targets.KindConfig, "TLS certificate not accepted: ", x509.UnknownAuthorityError{}},
		{"Hostname", targets.KindConfig, "TLS certificate not accepted: ", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "h"}},
		{"Timeout", targets.KindTimeout, "i/o timeout", timeoutErr{}},
		{"Refused", targets.KindNetwork, "connection refused", errors.New("connection refused")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kind, err := targets.TransportKind(&url.Error{Op: "Put", URL: secretURL, Err: tc.err})
			if kind != tc.kind || !strings.HasPrefix(err.Error(), tc.prefix) || !errors.Is(err, tc.err) {
				t.Fatalf("TransportKind = %s, %v; want %s, %q…", kind, err, tc.kind, tc.prefix)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "dav.example") {
				t.Fatalf("reported error repeats the URL: %v", err)
			}
		})
	}
}
