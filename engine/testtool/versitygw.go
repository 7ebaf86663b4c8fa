package testtool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Server is a running S3-compatible server with one empty bucket.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	Region    string
	Bucket    string
	AccessKey string
	SecretKey string
	Dir       string // the posix root: Dir/Bucket/<key> is each object's file
}

// StartVersityGW runs versitygw with its posix backend on a fresh directory, on a free loopback
// port, with a random access and secret key; creates the bucket "bastion-test"; and stops the
// server when the test ends. The test is skipped when versitygw is missing (see Require;
// scripts/deps builds it into .cache/bin).
func StartVersityGW(t testing.TB) S3Server {
	t.Helper()
	bin := Require(t, "versitygw")
	s := S3Server{
		Region:    "us-east-1",
		Bucket:    "bastion-test",
		AccessKey: "AK" + randHex(t, 8),
		SecretKey: randHex(t, 20),
		Dir:       t.TempDir(),
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	s.Endpoint = "http://" + addr
	cmd := exec.Command(bin,
		"--access", s.AccessKey, "--secret", s.SecretKey,
		"--port", addr, "--region", s.Region, "--quiet",
		"posix", s.Dir)
	out, exited := startServer(t, "versitygw", cmd)
	// Any answer will do: versitygw answers an anonymous request with 403.
	if _, err := waitHTTP(t, exited, func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/", nil)
	}); err != nil {
		t.Fatalf("versitygw on %s: %v\n%s", addr, err, strings.TrimSpace(out.String()))
	}
	client, err := minio.New(addr, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatalf("s3 client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("create bucket %s on versitygw: %v", s.Bucket, err)
	}
	return s
}

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random key: %v", err)
	}
	return hex.EncodeToString(b)
}
