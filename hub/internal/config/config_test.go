package config

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPrecedenceCLIOverEnvOverDBOverDefault(t *testing.T) {
	t.Parallel()
	c, err := Load(
		[]string{"--port", "1111", "--run-retention-days=30"},
		env(map[string]string{"BASTION_PORT": "2222", "BASTION_HOST": "0.0.0.0", "BASTION_RUN_RETENTION_DAYS": "60", "BASTION_LOG": "debug"}),
		map[string]string{"run-retention-days": "90", "log": "warn", "incomplete-cleanup-days": "3", "port": "3333"},
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		got  any
		want any
		src  Source
	}{
		{"port", c.Port, 1111, SourceCLI},
		{"host", c.Host, "0.0.0.0", SourceEnv},
		{"run-retention-days", c.RunRetentionDays, 30, SourceCLI},
		{"log", c.Log, "debug", SourceEnv},
		{"incomplete-cleanup-days", c.IncompleteCleanupDays, 3, SourceDB},
		{"log-keep-files", c.LogKeepFiles, 30, SourceDefault},
		{"run-concurrency", c.RunConcurrency, 2, SourceDefault},
		{"audit-retention-days", c.AuditRetentionDays, 180, SourceDefault},
		{"entries-cache-max-bytes", c.EntriesCacheMaxBytes, int64(1 << 30), SourceDefault},
	} {
		if tc.got != tc.want || c.Sources[tc.name] != tc.src {
			t.Errorf("%s = %v from %s, want %v from %s", tc.name, tc.got, c.Sources[tc.name], tc.want, tc.src)
		}
	}
	if c, err := Load([]string{"--insecure-http"}, env(nil), nil); err != nil || !c.InsecureHTTP {
		t.Errorf("bare --insecure-http: %v %v", c.InsecureHTTP, err)
	}
	if c, _ := Load(nil, env(map[string]string{"RUST_LOG": "warn,tower_http=debug"}), nil); c.Log != "warn,tower_http=debug" || c.Sources["log"] != SourceEnv {
		t.Errorf("RUST_LOG fallback: %q from %s", c.Log, c.Sources["log"])
	}
	if c, _ := Load(nil, env(map[string]string{"RUST_LOG": "warn", "BASTION_LOG": "debug"}), nil); c.Log != "debug" {
		t.Errorf("BASTION_LOG must win over RUST_LOG: %q", c.Log)
	}
	// The port may never come from the database.
	c, _ = Load(nil, env(nil), map[string]string{"port": "3333"})
	if c.Port != 9876 {
		t.Errorf("port taken from the database: %d", c.Port)
	}
}

func TestInvalidValuesAreRefusedWithTheirSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--port", "0"}, nil, "--port"},
		{[]string{"--run-retention-days", "0"}, nil, "--run-retention-days"},
		{nil, map[string]string{"BASTION_AUDIT_RETENTION_DAYS": "0"}, "--audit-retention-days"},
		{nil, map[string]string{"BASTION_INCOMPLETE_CLEANUP_DAYS": "-1"}, "from env"},
		{[]string{"--hub-timezone", "Mars/Olympus"}, nil, "unknown timezone"},
		{[]string{"--public-base-url", "ftp://x"}, nil, "http or https"},
		{[]string{"--public-base-url", "https://u:p@x"}, nil, "user name"},
		{[]string{"--trusted-proxy", "bogus"}, nil, "not an IP"},
		{[]string{"--log-rotation", "weekly"}, nil, "never, hourly or daily"},
		{[]string{"--insecure-http=maybe"}, nil, "true or false"},
		{[]string{"--no-such-flag"}, nil, "not defined"},
		{[]string{"extra"}, nil, "unexpected argument"},
		{[]string{"--entries-cache-max-bytes", "1000"}, nil, "at least 1MiB"},
		{nil, map[string]string{"BASTION_ENTRIES_CACHE_MAX_BYTES": "lots"}, "from env"},
		{[]string{"--entries-cache-max-bytes", "9999999TiB"}, nil, "at least 1MiB"},
	} {
		_, err := Load(tc.args, env(tc.env), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%v, %v) error = %v, want it to mention %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestEntriesCacheMaxBytes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"1048576": 1 << 20, "512MiB": 512 << 20, " 2 GiB ": 2 << 30, "3KiB": 0, "1TiB": 1 << 40} {
		c, err := Load([]string{"--entries-cache-max-bytes", in}, env(nil), nil)
		if (want == 0) != (err != nil) || (err == nil && c.EntriesCacheMaxBytes != want) {
			t.Errorf("%q: %d %v, want %d", in, c.EntriesCacheMaxBytes, err, want)
		}
	}
}

func TestTrustedProxiesAndPublicURL(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{"--public-base-url", "https://backup.example.com/bastion/"},
		env(map[string]string{"BASTION_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicBaseURL != "https://backup.example.com/bastion" {
		t.Errorf("public base URL = %q", c.PublicBaseURL)
	}
	if len(c.TrustedProxies) != 2 || c.TrustedProxies[0].String() != "10.0.0.0/8" || c.TrustedProxies[1].String() != "192.168.1.1/32" {
		t.Errorf("trusted proxies = %v", c.TrustedProxies)
	}
	c, _ = Load(nil, env(nil), nil)
	if len(c.TrustedProxies) != 2 || c.TrustedProxies[0].String() != "127.0.0.1/32" || c.TrustedProxies[1].String() != "::1/128" {
		t.Errorf("default trusted proxies = %v", c.TrustedProxies)
	}
}

func TestPrintJSONHasValueAndSource(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{"--port", "1234"}, env(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Print(&buf, c, true); err != nil {
		t.Fatal(err)
	}
	var out map[string]struct {
		Value  any    `json:"value"`
		Source string `json:"source"`
	}
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out["port"].Value != float64(1234) || out["port"].Source != "cli" || out["host"].Source != "default" {
		t.Fatalf("config --json = %s", buf.String())
	}
}

func TestAllowedHostsAndBodyReadTimeout(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{"--allowed-host", "Hub.LAN", "--allowed-host=backup.example.com.,nas"}, env(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.AllowedHosts, " "); got != "hub.lan backup.example.com nas" || c.Sources["allowed-host"] != SourceCLI {
		t.Errorf("allowed hosts from flags: %q from %s", got, c.Sources["allowed-host"])
	}
	if c.BodyReadTimeout.String() != "1m0s" || c.Sources["body-read-timeout"] != SourceDefault {
		t.Errorf("default body read timeout: %v from %s", c.BodyReadTimeout, c.Sources["body-read-timeout"])
	}
	c, err = Load(nil, env(map[string]string{"BASTION_ALLOWED_HOSTS": "a.example, ::1", "BASTION_BODY_READ_TIMEOUT": "2m"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.AllowedHosts, " "); got != "a.example ::1" || c.BodyReadTimeout.String() != "2m0s" {
		t.Errorf("from the environment: %q %v", got, c.BodyReadTimeout)
	}
	for _, bad := range []string{"https://hub.lan", "hub.lan:8080", "hub.lan/x"} {
		if _, err := Load([]string{"--allowed-host", bad}, env(nil), nil); err == nil || !strings.Contains(err.Error(), "--allowed-host") {
			t.Errorf("--allowed-host %s: %v", bad, err)
		}
	}
	if _, err := Load([]string{"--body-read-timeout", "10ms"}, env(nil), nil); err == nil {
		t.Error("a body read timeout under a second was accepted")
	}
}

func TestLogFormat(t *testing.T) {
	t.Parallel()
	if c, err := Load(nil, env(nil), nil); err != nil || c.LogFormat != "auto" || c.Sources["log-format"] != SourceDefault {
		t.Errorf("default: %q from %s (%v)", c.LogFormat, c.Sources["log-format"], err)
	}
	if c, err := Load(nil, env(map[string]string{"BASTION_LOG_FORMAT": "json"}), nil); err != nil || c.LogFormat != "json" {
		t.Errorf("env: %q (%v)", c.LogFormat, err)
	}
	if c, err := Load([]string{"--log-format", "console"}, env(map[string]string{"BASTION_LOG_FORMAT": "json"}), nil); err != nil || c.LogFormat != "console" {
		t.Errorf("flag over env: %q (%v)", c.LogFormat, err)
	}
	// Not one of the settings the database may supply: logs start before it is read.
	if c, _ := Load(nil, env(nil), map[string]string{"log-format": "json"}); c.LogFormat != "auto" {
		t.Errorf("log format taken from the database: %q", c.LogFormat)
	}
	if _, err := Load([]string{"--log-format", "xml"}, env(nil), nil); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("bad format: %v", err)
	}
}

// --metrics-public is off unless asked for, by flag or environment, and never from the database:
// opening /metrics to everyone is a decision for whoever starts the Hub.
func TestMetricsPublicIsOptIn(t *testing.T) {
	t.Parallel()
	if c, err := Load(nil, env(nil), map[string]string{"metrics-public": "true"}); err != nil || c.MetricsPublic {
		t.Errorf("default (database says true): %v %v", c.MetricsPublic, err)
	}
	if c, err := Load([]string{"--metrics-public"}, env(nil), nil); err != nil || !c.MetricsPublic || c.Sources["metrics-public"] != SourceCLI {
		t.Errorf("bare --metrics-public: %v from %s, %v", c.MetricsPublic, c.Sources["metrics-public"], err)
	}
	if c, err := Load(nil, env(map[string]string{"BASTION_METRICS_PUBLIC": "true"}), nil); err != nil || !c.MetricsPublic || c.Sources["metrics-public"] != SourceEnv {
		t.Errorf("BASTION_METRICS_PUBLIC=true: %v from %s, %v", c.MetricsPublic, c.Sources["metrics-public"], err)
	}
	if _, err := Load(nil, env(map[string]string{"BASTION_METRICS_PUBLIC": "yes please"}), nil); err == nil {
		t.Error("BASTION_METRICS_PUBLIC=yes please was accepted")
	}
	var out bytes.Buffer
	if err := Print(&out, Config{MetricsPublic: true, Sources: map[string]Source{}}, false); err != nil || !strings.Contains(out.String(), "metrics-public") {
		t.Errorf("bastion config does not show metrics-public: %v\n%s", err, out.String())
	}
}
