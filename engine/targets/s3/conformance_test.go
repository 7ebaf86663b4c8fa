package s3_test

import (
	"testing"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/s3"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// versitygw with its posix backend: a real, separately built S3 server. The default part size
// (64 MiB) makes every conformance upload a single PUT; the small part size runs the same
// suite through multipart uploads (5 MiB parts: RoundTrip's 5 MiB + 12 345 bytes and the
// canceled 16 MiB upload are multipart).
func TestConformanceVersityGW(t *testing.T) {
	t.Parallel()
	srv := testtool.StartVersityGW(t)
	for _, tc := range []struct {
		name     string
		partSize int64
		prefix   string
	}{
		{"SinglePut", 0, "backups/bastion"},
		{"Multipart", s3.MinPartSizeBytes, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := config(srv, srv.Endpoint, tc.prefix)
			cfg.PartSizeBytes = tc.partSize
			targettest.Run(t, func(t *testing.T) targets.Target {
				tg, _ := newTarget(t, cfg, creds(srv), s3.Options{})
				return tg
			})
		})
	}
}
