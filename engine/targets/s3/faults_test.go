package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/s3"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// newInjector puts a targettest.Injector keyed by S3 operation (see opOf) in front of srv.
// Requests it does not answer are forwarded unchanged (Host included: it is signed).
func newInjector(t *testing.T, srv testtool.S3Server) (*targettest.Injector, string) {
	t.Helper()
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	in := &targettest.Injector{Key: opOf, Next: &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
		},
	}}
	hs := httptest.NewServer(in)
	t.Cleanup(hs.Close)
	return in, hs.URL
}

// opOf names the S3 operation of a request.
func opOf(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodPost && q.Has("delete"):
		return "DeleteObjects"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodGet && q.Has("uploads"):
		return "ListMultipartUploads"
	case r.Method == http.MethodGet && q.Get("list-type") == "2":
		return "ListObjectsV2"
	case r.Method == http.MethodHead:
		return "HeadObject"
	case r.Method == http.MethodGet:
		return "GetObject"
	}
	return r.Method
}

// s3Error reads the request body and answers status with an S3 error document.
func s3Error(status int, code string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, code)
	}
}

// cutAfter reads n bytes of the request body, then hijacks the connection and closes it.
func cutAfter(t *testing.T, n int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.CopyN(io.Discard, r.Body, n); err != nil {
			t.Errorf("cut: read %d bytes of the body: %v", n, err)
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	}
}

// corrupt forwards the request with one body byte flipped.
func corrupt(next http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if len(b) > 0 {
			b[len(b)/2] ^= 0x40
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		next.ServeHTTP(w, r)
	}
}

func expectErr(t *testing.T, err error, kind string, status, attempts int) *targets.Error {
	t.Helper()
	var te *targets.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v is not a *targets.Error", err)
	}
	if te.Kind != kind || te.Code != "s3_"+kind || te.HTTPStatus != status || te.Attempts != attempts || te.Hint == "" {
		t.Fatalf("error %v = {kind %q code %q status %d attempts %d hint %q}, want kind %q status %d attempts %d with a hint",
			te, te.Kind, te.Code, te.HTTPStatus, te.Attempts, te.Hint, kind, status, attempts)
	}
	return te
}

// expectStored checks the object's file in the server's posix root.
func expectStored(t *testing.T, srv testtool.S3Server, tg *s3.Target, run targets.RunRef, name string, seed, size int64) {
	t.Helper()
	key := strings.TrimPrefix(tg.Location(run), "s3://"+srv.Bucket+"/") + name
	b, err := onDisk(t, srv, key)
	if err != nil {
		t.Fatalf("object %s on the server: %v", key, err)
	}
	if int64(len(b)) != size || sha256.Sum256(b) != targettest.NewContent(seed, size).Digest() {
		t.Fatalf("object %s on the server: %d bytes, not the %d put (or different content)", key, len(b), size)
	}
}

// expectNoUploads checks that no multipart upload is left open in the bucket.
func expectNoUploads(t *testing.T, srv testtool.S3Server, key string) {
	t.Helper()
	// versitygw keeps an open upload's parts under .sgwtmp/multipart/<sha256 of the key> in the
	// bucket. Only this key's: the subtests share the server, and others may be uploading.
	sum := sha256.Sum256([]byte(key))
	var files []string
	_ = filepath.WalkDir(filepath.Join(srv.Dir, srv.Bucket, ".sgwtmp", "multipart", hex.EncodeToString(sum[:])), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("multipart upload parts left on the server: %v", files)
	}
}

const part = "payload.part000001"

func TestFaults(t *testing.T) {
	t.Parallel()
	srv := testtool.StartVersityGW(t)
	ctx := context.Background()

	setup := func(t *testing.T, opts s3.Options) (*targettest.Injector, *s3.Target, *targettest.Sleeps) {
		in, endpoint := newInjector(t, srv)
		cfg := config(srv, endpoint, "faults")
		cfg.PartSizeBytes = s3.MinPartSizeBytes
		tg, s := newTarget(t, cfg, creds(srv), opts)
		return in, tg, s
	}

	t.Run("SlowDownThenSuccess", func(t *testing.T) {
		t.Parallel()
		in, tg, s := setup(t, s3.Options{})
		in.Add(&targettest.Rule{Key: "PutObject", Times: 1, Do: s3Error(503, "SlowDown")})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 1, 5000)
		targettest.ExpectSleeps(t, s, time.Second)
		in.ExpectSent(t, "PutObject", 2)
		expectStored(t, srv, tg, run, part, 1, 5000)
	})

	t.Run("AttemptsRunOut", func(t *testing.T) {
		t.Parallel()
		in, tg, s := setup(t, s3.Options{})
		in.Add(&targettest.Rule{Key: "PutObject", Times: -1, Do: s3Error(503, "ServiceUnavailable")})
		_, err := tg.Put(ctx, targettest.NewRun(t), part, targettest.NewContent(1, 10), 10)
		expectErr(t, err, targets.KindUpstreamUnavailable, 503, 3)
		targettest.ExpectSleeps(t, s, time.Second, 2*time.Second)
		in.ExpectSent(t, "PutObject", 3)
	})

	t.Run("MaxPutAttempts", func(t *testing.T) {
		t.Parallel()
		in, tg, s := setup(t, s3.Options{MaxPutAttempts: 5})
		in.Add(&targettest.Rule{Key: "PutObject", Times: -1, Do: s3Error(500, "InternalError")})
		_, err := tg.Put(ctx, targettest.NewRun(t), part, targettest.NewContent(1, 10), 10)
		expectErr(t, err, targets.KindUpstreamUnavailable, 500, 5)
		targettest.ExpectSleeps(t, s, time.Second, 2*time.Second, 4*time.Second, 8*time.Second)
	})

	for _, tc := range []struct {
		status int
		code   string
		kind   string
	}{
		{403, "AccessDenied", targets.KindAuth},
		{403, "InvalidAccessKeyId", targets.KindAuth},
		{404, "NoSuchBucket", targets.KindConfig},
		{400, "EntityTooLarge", targets.KindPayloadTooLarge},
		{403, "QuotaExceeded", targets.KindStorageFull},
		{400, "BadDigest", targets.KindIntegrity},
		{429, "TooManyRequestsX", targets.KindRateLimited}, // an unknown code: the status decides
	} {
		t.Run("Classify"+tc.code, func(t *testing.T) {
			t.Parallel()
			in, tg, s := setup(t, s3.Options{MaxPutAttempts: 1})
			in.Add(&targettest.Rule{Key: "PutObject", Times: -1, Do: s3Error(tc.status, tc.code)})
			_, err := tg.Put(ctx, targettest.NewRun(t), targets.ManifestName, targettest.NewContent(1, 100), 100)
			expectErr(t, err, tc.kind, tc.status, 1)
			targettest.ExpectSleeps(t, s)
		})
	}

	t.Run("ConnectionResetMidPut", func(t *testing.T) {
		t.Parallel()
		in, tg, s := setup(t, s3.Options{})
		in.Add(&targettest.Rule{Key: "PutObject", Times: 1, Do: cutAfter(t, 256<<10)})
		run := targettest.NewRun(t)
		const size = 3<<20 + 7
		targettest.Put(t, tg, run, part, 3, size)
		targettest.ExpectSleeps(t, s, time.Second)
		in.ExpectSent(t, "PutObject", 2)
		expectStored(t, srv, tg, run, part, 3, size)
	})

	t.Run("ConnectionResetMidPartRetriesThatPart", func(t *testing.T) {
		t.Parallel()
		in, tg, s := setup(t, s3.Options{})
		in.Add(&targettest.Rule{Key: "UploadPart", Times: 1, Match: func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "2" }, Do: cutAfter(t, 1<<20)})
		run := targettest.NewRun(t)
		const size = 2*s3.MinPartSizeBytes + 12345 // three parts
		targettest.Put(t, tg, run, part, 4, size)
		targettest.ExpectSleeps(t, s, time.Second)
		in.ExpectSent(t, "CreateMultipartUpload", 1)
		in.ExpectSent(t, "UploadPart", 4)
		in.ExpectSent(t, "CompleteMultipartUpload", 1)
		in.ExpectSent(t, "PutObject", 0)
		expectStored(t, srv, tg, run, part, 4, size)
		targettest.Expect(t, tg, run, part, 4, size)
	})

	t.Run("FailedMultipartIsAbortedAndInvisible", func(t *testing.T) {
		t.Parallel()
		in, tg, _ := setup(t, s3.Options{})
		in.Add(&targettest.Rule{Key: "UploadPart", Times: -1, Match: func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "2" }, Do: s3Error(500, "InternalError")})
		run := targettest.NewRun(t)
		const size = s3.MinPartSizeBytes + 1
		_, err := tg.Put(ctx, run, part, targettest.NewContent(5, size), size)
		expectErr(t, err, targets.KindUpstreamUnavailable, 500, 3)
		in.ExpectSent(t, "AbortMultipartUpload", 1)
		in.ExpectSent(t, "CompleteMultipartUpload", 0)
		targettest.ExpectMissing(t, tg, run, part)
	})

	t.Run("CanceledMultipartIsAborted", func(t *testing.T) {
		t.Parallel()
		in, tg, _ := setup(t, s3.Options{})
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		in.Add(&targettest.Rule{Key: "UploadPart", Times: -1, Match: func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "2" }, Do: func(w http.ResponseWriter, r *http.Request) {
			cancel()
			_, _ = io.Copy(io.Discard, r.Body) // ends when the client drops the connection
		}})
		run := targettest.NewRun(t)
		const size = 2*s3.MinPartSizeBytes + 1
		if _, err := tg.Put(cctx, run, part, targettest.NewContent(6, size), size); !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled put: %v", err)
		}
		in.ExpectSent(t, "AbortMultipartUpload", 1)
		targettest.ExpectMissing(t, tg, run, part)
	})

	t.Run("CorruptedInTransitIsRefused", func(t *testing.T) {
		t.Parallel()
		in, tg, _ := setup(t, s3.Options{})
		in.Add(&targettest.Rule{Key: "PutObject", Times: -1, Do: corrupt(in.Next)})
		run := targettest.NewRun(t)
		_, err := tg.Put(ctx, run, part, targettest.NewContent(7, 4096), 4096)
		expectErr(t, err, targets.KindIntegrity, 400, 1)
		targettest.ExpectMissing(t, tg, run, part)
	})

	t.Run("SlowServerTimesOut", func(t *testing.T) {
		t.Parallel()
		in, tg, _ := setup(t, s3.Options{RequestTimeout: 200 * time.Millisecond, MaxPutAttempts: 1})
		release := make(chan struct{})
		t.Cleanup(func() { close(release) }) // before the proxy's Close, which waits for handlers
		in.Add(&targettest.Rule{Key: "PutObject", Times: -1, Do: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			select { // the server never answers
			case <-r.Context().Done():
			case <-release:
			}
		}})
		_, err := tg.Put(ctx, targettest.NewRun(t), targets.ManifestName, targettest.NewContent(1, 1000), 1000)
		expectErr(t, err, targets.KindTimeout, 0, 1)
	})

	t.Run("GetRetriedBeforeAnswer", func(t *testing.T) {
		t.Parallel()
		in, tg, s := setup(t, s3.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 5, 70000)
		in.Add(&targettest.Rule{Key: "GetObject", Times: 1, Do: s3Error(503, "SlowDown")})
		in.Add(&targettest.Rule{Key: "HeadObject", Times: 1, Do: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }})
		targettest.Expect(t, tg, run, part, 5, 70000)
		in.ExpectSent(t, "GetObject", 2)
		targettest.ExpectSleeps(t, s, time.Second, time.Second)
	})

	t.Run("EmptyRegionAsksTheBucket", func(t *testing.T) {
		t.Parallel()
		_, endpoint := newInjector(t, srv)
		cfg := config(srv, endpoint, "no-region")
		cfg.Region = ""
		tg, _ := newTarget(t, cfg, creds(srv), s3.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 6, 1234)
		targettest.Expect(t, tg, run, part, 6, 1234)
	})

	t.Run("GetCutAfterBytes", func(t *testing.T) {
		t.Parallel()
		in, tg, _ := setup(t, s3.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 5, 70000)
		in.Add(&targettest.Rule{Key: "GetObject", Times: -1, Do: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "70000")
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			w.WriteHeader(200)
			_, _ = w.Write(make([]byte, 1000))
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}})
		rc, err := tg.Open(ctx, run, part)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		n, err := io.Copy(io.Discard, rc)
		if n != 1000 || targets.KindOf(err) != targets.KindNetwork {
			t.Fatalf("read %d bytes, %v; want 1000 then a network error", n, err)
		}
	})

	t.Run("DeleteRunManyPages", func(t *testing.T) {
		t.Parallel()
		in, tg, _ := setup(t, s3.Options{ListPageSize: 3})
		run := targettest.NewRun(t)
		sibling := targets.RunRef{JobID: run.JobID, RunID: run.RunID + "x"} // shares the key prefix but not the "/"
		for i := range 10 {
			targettest.Put(t, tg, run, fmt.Sprintf("payload.part%06d", i+1), int64(i), 100)
		}
		targettest.Put(t, tg, run, targets.CompleteName, 1, 2)
		targettest.Put(t, tg, sibling, part, 9, 10)
		res, err := tg.DeleteRun(ctx, run)
		if err != nil || res != targets.DeleteDeleted {
			t.Fatalf("delete = %q, %v", res, err)
		}
		// 11 objects in pages of 3: four DeleteObjects, and a fifth, empty listing.
		in.ExpectSent(t, "DeleteObjects", 4)
		in.ExpectSent(t, "ListObjectsV2", 5)
		for i := range 10 {
			targettest.ExpectMissing(t, tg, run, fmt.Sprintf("payload.part%06d", i+1))
		}
		targettest.Expect(t, tg, sibling, part, 9, 10)
		if res, err := tg.DeleteRun(ctx, run); err != nil || res != targets.DeleteNotFound {
			t.Fatalf("second delete = %q, %v", res, err)
		}
	})

	t.Run("CleanupSeesCompleteInListing", func(t *testing.T) {
		t.Parallel()
		in, tg, _ := setup(t, s3.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 1, 10)
		targettest.Put(t, tg, run, targets.CompleteName, 2, 2)
		// The HEAD says complete.json is absent (as if written just after it): the listing
		// still finds it before anything is deleted.
		in.Add(&targettest.Rule{Key: "HeadObject", Times: 1, Match: func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, targets.CompleteName) },
			Do: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }})
		res, err := tg.CleanupRun(ctx, run)
		if err != nil || res != targets.CleanupSkipComplete {
			t.Fatalf("cleanup = %q, %v; want %q", res, err, targets.CleanupSkipComplete)
		}
		in.ExpectSent(t, "DeleteObjects", 0)
		targettest.Expect(t, tg, run, part, 1, 10)
	})

	t.Run("CleanupAbortsOpenUploads", func(t *testing.T) {
		t.Parallel()
		in, tg, _ := setup(t, s3.Options{})
		run := targettest.NewRun(t)
		// An upload whose process died: parts sent, never completed nor aborted.
		in.Add(&targettest.Rule{Key: "AbortMultipartUpload", Times: 1, Do: s3Error(500, "InternalError")})
		in.Add(&targettest.Rule{Key: "UploadPart", Times: -1, Match: func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "2" }, Do: s3Error(403, "AccessDenied")})
		const size = s3.MinPartSizeBytes + 1
		if _, err := tg.Put(ctx, run, part, targettest.NewContent(1, size), size); targets.KindOf(err) != targets.KindAuth {
			t.Fatalf("put: %v", err)
		}
		res, err := tg.CleanupRun(ctx, run)
		if err != nil || res != targets.CleanupDeleted {
			t.Fatalf("cleanup = %q, %v; want %q", res, err, targets.CleanupDeleted)
		}
		in.ExpectSent(t, "AbortMultipartUpload", 2)
		expectNoUploads(t, srv, "faults/"+run.JobID+"/"+run.RunID+"/"+part)
	})
}
