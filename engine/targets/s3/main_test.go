package s3_test

import (
	"os"
	"testing"

	"github.com/bastion-backup/bastion/engine/testtool"
)

// TestMain fails the run if goroutines of this package or of minio-go outlive the tests: every
// listing, upload and download must be released, whatever way it ended.
func TestMain(m *testing.M) {
	os.Exit(testtool.RunCheckingLeaks(m, "/engine/targets/s3.", "minio-go/v7."))
}
