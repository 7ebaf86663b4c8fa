package testtool

import (
	"bytes"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// RunCheckingLeaks runs the tests and then fails the run (exit code 1, stacks on stderr) if
// goroutines matching markers outlive them. TestMain: os.Exit(testtool.RunCheckingLeaks(m, …)).
func RunCheckingLeaks(m *testing.M, markers ...string) int {
	code := m.Run()
	if code == 0 {
		if leaked := LeakedGoroutines(markers...); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	return code
}

// LeakedGoroutines returns the stacks of goroutines running code that matches any of markers
// (e.g. "/engine/targets/s3."), or "" once there are none. It polls for a few seconds before
// giving up, since connections being closed may take a moment to unwind. Call it from TestMain
// after m.Run.
func LeakedGoroutines(markers ...string) string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
		var leaked []string
		for _, g := range strings.Split(buf.String(), "\n\n") {
			for _, m := range markers {
				if strings.Contains(g, m) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond) // polling against a deadline, not synchronising
	}
}
