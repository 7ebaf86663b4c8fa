package s3_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/bastion-backup/bastion/engine/testtool"
)

// TestMain fails the run if goroutines of this package or of minio-go outlive the tests: every
// listing, upload and download must be released, whatever way it ended.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := testtool.LeakedGoroutines("/engine/targets/s3.", "minio-go/v7."); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}
