package webdav_test

import (
	"os"
	"testing"

	"github.com/bastion-backup/bastion/engine/testtool"
)

// TestMain fails the run if goroutines of this package outlive the tests: every request's
// watchdog must be released, whatever way the request ended.
func TestMain(m *testing.M) {
	os.Exit(testtool.RunCheckingLeaks(m, "/engine/targets/webdav."))
}
