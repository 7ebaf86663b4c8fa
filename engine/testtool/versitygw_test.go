package testtool_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/bastion-backup/bastion/engine/testtool"
)

func TestStartVersityGW(t *testing.T) {
	t.Parallel()
	srv := testtool.StartVersityGW(t)
	if !strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:") || srv.Bucket == "" || srv.AccessKey == "" || srv.SecretKey == "" {
		t.Fatalf("server = %+v", srv)
	}
	client := func(secret string) *minio.Client {
		c, err := minio.New(strings.TrimPrefix(srv.Endpoint, "http://"), &minio.Options{
			Creds: credentials.NewStaticV4(srv.AccessKey, secret, ""), Region: srv.Region, BucketLookup: minio.BucketLookupPath, MaxRetries: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	if _, err := client(srv.SecretKey).PutObject(ctx, srv.Bucket, "a/b.txt", bytes.NewReader([]byte("hello")), 5, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put with the right key: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(srv.Dir, srv.Bucket, "a", "b.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("object on disk = %q, %v", b, err)
	}
	if _, err := client("wrong-secret").StatObject(ctx, srv.Bucket, "a/b.txt", minio.StatObjectOptions{}); err == nil {
		t.Fatal("a wrong secret key was accepted")
	}
}
