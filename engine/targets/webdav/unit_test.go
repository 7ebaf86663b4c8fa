package webdav_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
)

var creds = secrets.WebDAV{Username: "u", Password: "pw-very-secret"}

func TestNewNormalizesBaseURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://dav.example.com/remote.php/dav/files/u": "https://dav.example.com/remote.php/dav/files/u/",
		"https://dav.example.com":                        "https://dav.example.com/",
		"HTTP://dav.example.com:8080/x/#frag":            "http://dav.example.com:8080/x/",
		"  https://h/a%20b  ":                            "https://h/a%20b/",
	} {
		tg, err := webdav.New(in, creds, webdav.Options{SecretName: "nas"})
		if err != nil {
			t.Errorf("New(%q): %v", in, err)
			continue
		}
		if tg.BaseURL() != want {
			t.Errorf("New(%q).BaseURL() = %q, want %q", in, tg.BaseURL(), want)
		}
		if r := tg.Redacted(); r.Type != "webdav" || r.SecretName != "nas" || string(r.JSON()) != `{"type":"webdav","base_url":"`+want+`","secret_name":"nas"}` {
			t.Errorf("Redacted = %+v", r)
		}
	}
	tg, _ := webdav.New("https://h/base", creds, webdav.Options{})
	run := targets.RunRef{JobID: "j-1", RunID: "r_2"}
	if got := tg.Location(run); got != "https://h/base/j-1/r_2/" {
		t.Errorf("Location = %q", got)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url   string
		creds secrets.WebDAV
		opts  webdav.Options
	}{
		{url: "https://user:hunter2-pw@dav.example.com/x", creds: creds},
		{url: "https://user@dav.example.com/x", creds: creds},
		{url: "ftp://dav.example.com/", creds: creds},
		{url: "dav.example.com/x", creds: creds},
		{url: "https:///nohost", creds: creds},
		{url: "https://h/x?token=hunter2-pw", creds: creds},
		{url: "http://h:bad port/hunter2-pw", creds: creds},
		{url: "https://h/", creds: secrets.WebDAV{Username: "u"}},
		{url: "https://h/", creds: secrets.WebDAV{Password: "p"}},
		{url: "https://h/", creds: creds, opts: webdav.Options{MaxPutAttempts: 21}},
		{url: "https://h/", creds: creds, opts: webdav.Options{MaxPutAttempts: -1}},
		{url: "https://h/", creds: creds, opts: webdav.Options{RequestTimeout: -time.Second}},
		{url: "https://h/", creds: creds, opts: webdav.Options{Limits: webdav.Limits{Concurrency: 129}}},
		{url: "https://h/", creds: creds, opts: webdav.Options{Limits: webdav.Limits{PutQPS: 10001}}},
		{url: "https://h/", creds: creds, opts: webdav.Options{Limits: webdav.Limits{Burst: -1}}},
	} {
		_, err := webdav.New(tc.url, tc.creds, tc.opts)
		if targets.KindOf(err) != targets.KindConfig {
			t.Errorf("New(%q, %+v) = %v, want a config error", tc.url, tc.opts, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2-pw") || strings.Contains(err.Error(), creds.Password) {
			t.Errorf("error repeats a secret: %v", err)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"2", 2 * time.Second, true},
		{" 0 ", 0, true},
		{"60", 60 * time.Second, true},
		{"61", 60 * time.Second, true},
		{"99999999999999999999", 0, false},
		{"-1", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{now.Add(9 * time.Second).Format(http.TimeFormat), 9 * time.Second, true},
		{now.Add(9 * time.Second).Format(time.RFC850), 9 * time.Second, true},
		{now.Add(9 * time.Second).Format(time.ANSIC), 9 * time.Second, true},
		{now.Add(time.Hour).Format(http.TimeFormat), 60 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	} {
		got, ok := webdav.ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i, w := range want {
		if got := webdav.Backoff(i + 1); got != w*time.Second {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w*time.Second)
		}
	}
	if got := webdav.Backoff(1000); got != 30*time.Second {
		t.Errorf("Backoff(1000) = %v", got)
	}
}

func TestStatusKind(t *testing.T) {
	t.Parallel()
	for status, kind := range map[int]string{
		401: targets.KindAuth, 403: targets.KindPermission, 413: targets.KindPayloadTooLarge,
		507: targets.KindStorageFull, 404: targets.KindConfig, 409: targets.KindConfig, 412: targets.KindConfig,
		429: targets.KindRateLimited, 408: targets.KindTimeout, 504: targets.KindTimeout,
		500: targets.KindUpstreamUnavailable, 502: targets.KindUpstreamUnavailable, 503: targets.KindUpstreamUnavailable,
		301: targets.KindConfig, 307: targets.KindConfig, 400: targets.KindUnknown, 423: targets.KindUnknown,
	} {
		if got := targets.StatusKind(status); got != kind {
			t.Errorf("StatusKind(%d) = %q, want %q", status, got, kind)
		}
		if webdav.Hint(kind) == "" || webdav.Code(kind) != "webdav_"+kind {
			t.Errorf("kind %q lacks a hint or code", kind)
		}
	}
}
