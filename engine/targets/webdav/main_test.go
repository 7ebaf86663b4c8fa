package webdav_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/bastion-backup/bastion/engine/testtool"
)

// TestMain fails the run if goroutines of this package outlive the tests: every request's
// watchdog must be released, whatever way the request ended.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := testtool.LeakedGoroutines("/engine/targets/webdav."); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}
