package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestAgentDataDirIsNotTheHubs: `bastion agent` reads its own BASTION_AGENT_DATA_DIR, never the
// Hub's BASTION_DATA_DIR, so both can be set in one environment.
func TestAgentDataDirIsNotTheHubs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"HubVariableIgnored", map[string]string{"BASTION_DATA_DIR": "/var/lib/bastion"}, nil, ""},
		{"AgentVariable", map[string]string{"BASTION_DATA_DIR": "/var/lib/bastion", "BASTION_AGENT_DATA_DIR": "/var/lib/bastion-agent"}, nil, "/var/lib/bastion-agent"},
		{"FlagWins", map[string]string{"BASTION_AGENT_DATA_DIR": "/env"}, []string{"--data-dir", "/flag"}, "/flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := parseAgentFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if f.dataDir != tc.want {
				t.Fatalf("data dir %q, want %q", f.dataDir, tc.want)
			}
		})
	}
}

// Hooks are off unless the agent's operator turns them on.
func TestAgentAllowHooksFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want bool
	}{
		{"Default", nil, nil, false},
		{"Flag", nil, []string{"--allow-hooks"}, true},
		{"Env", map[string]string{"BASTION_ALLOW_HOOKS": "1"}, nil, true},
		{"FlagOffWinsOverEnv", map[string]string{"BASTION_ALLOW_HOOKS": "true"}, []string{"--allow-hooks=false"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := parseAgentFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if f.allowHooks != tc.want {
				t.Fatalf("allowHooks %v, want %v", f.allowHooks, tc.want)
			}
		})
	}
}

// TestAgentEntriesCacheMaxBytes: `bastion agent` bounds its entries cache from the flag, else
// BASTION_ENTRIES_CACHE_MAX_BYTES, else 1 GiB, and refuses a size it cannot read before it
// starts anything.
func TestAgentEntriesCacheMaxBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"Default", nil, nil, "1GiB"},
		{"Env", map[string]string{"BASTION_ENTRIES_CACHE_MAX_BYTES": "256MiB"}, nil, "256MiB"},
		{"FlagWins", map[string]string{"BASTION_ENTRIES_CACHE_MAX_BYTES": "256MiB"}, []string{"--entries-cache-max-bytes", "2GiB"}, "2GiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := parseAgentFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil || f.entriesCacheMaxBytes != tc.want {
				t.Fatalf("%q %v, want %q", f.entriesCacheMaxBytes, err, tc.want)
			}
		})
	}
	err := runAgent(context.Background(), []string{"--entries-cache-max-bytes", "12", "--data-dir", t.TempDir()},
		func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--entries-cache-max-bytes") {
		t.Fatalf("a bad size: %v", err)
	}
}
