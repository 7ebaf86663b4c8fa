package agentsock

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAgentFailureCodeIsACode: a live result's summary.error_code becomes the run's error code only
// when it is one; any other text falls back to agent_failed.
func TestAgentFailureCodeIsACode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"error_code":"source_unreadable"}`:               "source_unreadable",
		`{"error_code":"line\nforged"}`:                    "agent_failed",
		`{"error_code":"` + strings.Repeat("a", 65) + `"}`: "agent_failed",
		`{"error_code":7}`:                                 "agent_failed",
		`{}`:                                               "agent_failed",
		`{"error_code":"` + strings.Repeat("x", 1<<20) + `","a":1}`: "agent_failed",
	} {
		if code, _ := agentFailure(json.RawMessage(in), nil, "failed"); code != want {
			t.Errorf("error_code of %.40q: %.40q, want %q", in, code, want)
		}
	}
}
