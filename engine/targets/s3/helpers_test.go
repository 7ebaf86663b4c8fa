package s3_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/targets/s3"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// config is a target config for srv at endpoint (the server itself or a proxy in front).
func config(srv testtool.S3Server, endpoint, prefix string) s3.Config {
	return s3.Config{
		Endpoint:   endpoint,
		Region:     srv.Region,
		Bucket:     srv.Bucket,
		Prefix:     prefix,
		SecretName: "test-s3",
		PathStyle:  true,
	}
}

func creds(srv testtool.S3Server) s3.Credentials {
	return s3.Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}
}

// newTarget opens a Target with recorded sleeps and logs sent to the test and to logTo.
func newTarget(t testing.TB, cfg s3.Config, c s3.Credentials, opts s3.Options, logTo ...io.Writer) (*s3.Target, *targettest.Sleeps) {
	t.Helper()
	s := &targettest.Sleeps{}
	if opts.Sleep == nil {
		opts.Sleep = s.Sleep
	}
	opts.Logger = zerolog.New(io.MultiWriter(append(logTo, zerolog.NewTestWriter(t))...)).Level(zerolog.DebugLevel)
	tg, err := s3.Open(context.Background(), cfg, c, opts)
	if err != nil {
		t.Fatalf("open s3 target: %v", err)
	}
	return tg, s
}

// onDisk reads an object's file in versitygw's posix root, bypassing S3.
func onDisk(t testing.TB, srv testtool.S3Server, key string) ([]byte, error) {
	t.Helper()
	return os.ReadFile(filepath.Join(srv.Dir, srv.Bucket, filepath.FromSlash(key)))
}
