package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDoctorOnARealHubsDataDir: a data dir left by a real Hub start is healthy; breaking
// master.key makes doctor fail with exit status 1 (run's error) and say how to fix it. The Hub
// also honours --log-format console when its stderr is not a terminal.
func TestDoctorOnARealHubsDataDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	_, stop, logs := startHub(t, "--data-dir", dir, "--log-format", "console")
	// Only the data dir it leaves matters here (a stop right after start may report a loop's
	// cancelled context).
	_ = stop()
	if l := logs.String(); !strings.Contains(l, "starting Bastion Hub") || strings.Contains(l, `"message":`) {
		t.Fatalf("--log-format console gave:\n%s", l)
	}

	doctor := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"doctor", "--data-dir", dir}, args...), noEnv, &out, io.Discard)
		return out.String(), err
	}
	out, err := doctor("--json")
	if err != nil {
		t.Fatalf("doctor on a fresh Hub data dir: %v\n%s", err, out)
	}
	var rep struct {
		OK     bool `json:"ok"`
		Checks []struct{ Name, Status, Message, Fix string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK || len(rep.Checks) < 6 {
		t.Fatalf("report %s (%v)", out, err)
	}
	for _, c := range rep.Checks {
		if c.Status == "FAIL" {
			t.Errorf("%s FAIL: %s", c.Name, c.Message)
		}
	}

	if err := os.Chmod(filepath.Join(dir, "master.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = doctor()
	if !errors.Is(err, errDoctorFailed) {
		t.Fatalf("doctor with a world-readable master.key: %v", err)
	}
	if !strings.Contains(out, "FAIL  master_key") || !strings.Contains(out, "fix: chmod 600") {
		t.Fatalf("text report:\n%s", out)
	}
}

func TestAgentRefusesUnknownLogFormat(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"agent", "--hub-url", "http://127.0.0.1:1", "--data-dir", t.TempDir(), "--log-format", "xml"},
		noEnv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("agent with --log-format xml: %v", err)
	}
	f, err := parseAgentFlags(nil, func(k string) string { return map[string]string{"BASTION_LOG_FORMAT": "json"}[k] }, io.Discard)
	if err != nil || f.logFormat != "json" {
		t.Fatalf("BASTION_LOG_FORMAT: %q %v", f.logFormat, err)
	}
}
