package webdav_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// newInjector puts a targettest.Injector keyed by HTTP method in front of up, and fails the test
// if any request came without Basic auth.
func newInjector(t *testing.T, up upstream) (*targettest.Injector, string) {
	t.Helper()
	in := &targettest.Injector{Next: proxyTo(t, up)}
	var noAuth atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); !ok {
			noAuth.Add(1)
		}
		in.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if n := noAuth.Load(); n != 0 {
			t.Errorf("%d requests without Basic auth", n)
		}
	})
	// Same path as upstream: only scheme and host change.
	return in, srv.URL + strings.TrimPrefix(up.base, hostOf(up.base))
}

func hostOf(u string) string {
	i := strings.Index(u, "://")
	j := strings.IndexByte(u[i+3:], '/')
	return u[:i+3+j]
}

// answer reads the request body (as a server that looked at it would) and answers status.
func answer(status int, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(status)
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

func suffix(s string) func(*http.Request) bool {
	return func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, s) }
}

func digest(b []byte) [32]byte { return sha256.Sum256(b) }

func expectOnDisk(t *testing.T, up upstream, run targets.RunRef, name string, seed, size int64) {
	t.Helper()
	got := onDisk(t, up, run.JobID, run.RunID, name)
	if int64(len(got)) != size || digest(got) != targettest.NewContent(seed, size).Digest() {
		t.Fatalf("%s on the server: %d bytes, not the %d put (or different content)", name, len(got), size)
	}
}

func expectErr(t *testing.T, err error, kind string, status, attempts int) *targets.Error {
	t.Helper()
	var te *targets.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v is not a *targets.Error", err)
	}
	if te.Kind != kind || te.Code != "webdav_"+kind || te.HTTPStatus != status || te.Attempts != attempts || te.Hint == "" {
		t.Fatalf("error = {kind %q code %q status %d attempts %d hint %q}, want kind %q status %d attempts %d with a hint",
			te.Kind, te.Code, te.HTTPStatus, te.Attempts, te.Hint, kind, status, attempts)
	}
	return te
}

func TestFaultsXNet(t *testing.T) {
	t.Parallel()
	runFaults(t, startXNet(t))
}

func TestFaultsRclone(t *testing.T) {
	t.Parallel()
	runFaults(t, startRclone(t))
}

const part = "payload.part000001"

func runFaults(t *testing.T, up upstream) {
	ctx := context.Background()

	t.Run("RateLimitedHonoursRetryAfter", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Key: "PUT", Times: 1, Do: answer(429, "Retry-After", "2")})
		tg, s := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 1, 5000)
		targettest.ExpectSleeps(t, s, 2*time.Second)
		in.ExpectSent(t, "PUT", 2)
		expectOnDisk(t, up, run, part, 1, 5000)
	})

	t.Run("RetryAfterDateAndCap", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Key: "PUT", Times: 1, Do: answer(503, "Retry-After", epoch.Add(7*time.Second).Format(http.TimeFormat))})
		in.Add(&targettest.Rule{Key: "PUT", Times: 1, Do: answer(429, "Retry-After", "3600")})
		tg, s := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, targets.ManifestName, 1, 50)
		targettest.ExpectSleeps(t, s, 7*time.Second, 60*time.Second)
		in.ExpectSent(t, "PUT", 3)
	})

	t.Run("UnavailableThenSuccess", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Key: "PUT", Times: 1, Do: answer(503)})
		tg, s := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 2, 3000)
		targettest.ExpectSleeps(t, s, time.Second)
		in.ExpectSent(t, "PUT", 2)
		expectOnDisk(t, up, run, part, 2, 3000)
	})

	t.Run("AttemptsRunOut", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Key: "PUT", Times: -1, Do: answer(502)})
		tg, s := newTarget(t, base, up, webdav.Options{})
		_, err := tg.Put(ctx, targettest.NewRun(t), part, targettest.NewContent(1, 10), 10)
		expectErr(t, err, targets.KindUpstreamUnavailable, 502, 3)
		targettest.ExpectSleeps(t, s, time.Second, 2*time.Second)
		in.ExpectSent(t, "PUT", 3)
	})

	t.Run("MaxPutAttempts", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Key: "PUT", Times: -1, Do: answer(500)})
		tg, s := newTarget(t, base, up, webdav.Options{MaxPutAttempts: 6})
		_, err := tg.Put(ctx, targettest.NewRun(t), part, targettest.NewContent(1, 10), 10)
		expectErr(t, err, targets.KindUpstreamUnavailable, 500, 6)
		targettest.ExpectSleeps(t, s, 1*time.Second, 2*time.Second, 4*time.Second, 8*time.Second, 16*time.Second)
		in.ExpectSent(t, "PUT", 6)
	})

	for _, tc := range []struct {
		name   string
		status int
		kind   string
		hint   string
	}{
		{"StorageFull", 507, targets.KindStorageFull, "full"},
		{"Unauthorized", 401, targets.KindAuth, "Check the WebDAV username and password in Settings → WebDAV credentials"},
		{"Forbidden", 403, targets.KindPermission, "write access"},
		{"PayloadTooLarge", 413, targets.KindPayloadTooLarge, "part size"},
		{"PreconditionFailed", 412, targets.KindConfig, "base URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, base := newInjector(t, up)
			in.Add(&targettest.Rule{Key: "PUT", Times: -1, Do: answer(tc.status, "Retry-After", "1")})
			tg, s := newTarget(t, base, up, webdav.Options{MaxPutAttempts: 5})
			run := targettest.NewRun(t)
			_, err := tg.Put(ctx, run, part, targettest.NewContent(1, 100), 100)
			te := expectErr(t, err, tc.kind, tc.status, 1)
			if !strings.Contains(te.Hint, tc.hint) {
				t.Errorf("hint %q does not mention %q", te.Hint, tc.hint)
			}
			targettest.ExpectSleeps(t, s)
			// Not retried.
			in.ExpectSent(t, "PUT", 1)
		})
	}

	t.Run("UnauthorizedEverywhere", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Times: -1, Do: answer(401)})
		tg, s := newTarget(t, base, up, webdav.Options{})
		_, err := tg.Put(ctx, targettest.NewRun(t), part, targettest.NewContent(1, 100), 100)
		expectErr(t, err, targets.KindAuth, 401, 1)
		if n := in.Count("MKCOL") + in.Count("PUT") + in.Count("HEAD"); n != 1 {
			t.Fatalf("%d requests after a 401, want 1", n)
		}
		targettest.ExpectSleeps(t, s)
	})

	t.Run("ConnectionCutMidPut", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Key: "PUT", Times: 1, Do: cutAfter(t, 256<<10)})
		tg, s := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		const size = 3<<20 + 7
		targettest.Put(t, tg, run, part, 3, size)
		targettest.ExpectSleeps(t, s, time.Second)
		in.ExpectSent(t, "PUT", 2)
		expectOnDisk(t, up, run, part, 3, size)
		targettest.Expect(t, tg, run, part, 3, size)
	})

	t.Run("HeadRetried", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		tg, s := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 1, 10)
		in.Add(&targettest.Rule{Key: "HEAD", Times: 2, Do: answer(503)})
		before := in.Count("HEAD")
		if n, err := tg.Size(ctx, run, part); err != nil || n != 10 {
			t.Fatalf("size = %d, %v", n, err)
		}
		if n := in.Count("HEAD") - before; n != 3 {
			t.Fatalf("HEAD sent %d times, want 3", n)
		}
		targettest.ExpectSleeps(t, s, time.Second, 2*time.Second)
	})

	t.Run("HeadWithoutContentLength", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Key: "HEAD", Times: -1, Do: answer(200)}) // Go sends no Content-Length here
		tg, _ := newTarget(t, base, up, webdav.Options{})
		_, err := tg.Size(ctx, targettest.NewRun(t), part)
		expectErr(t, err, targets.KindUnknown, 200, 1)
	})

	t.Run("MkcolCreatesParents", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		base += "deep/a/b/"
		// A strict server: 409 while the parent collection has not been made (through us).
		var mu sync.Mutex
		made := map[string]bool{}
		in.Add(&targettest.Rule{Key: "MKCOL", Times: -1, Match: func(r *http.Request) bool {
			mu.Lock()
			defer mu.Unlock()
			p := strings.TrimSuffix(r.URL.Path, "/")
			parent := p[:strings.LastIndexByte(p, '/')+1]
			if !strings.Contains(parent, "deep") || made[parent] {
				made[p+"/"] = true
				return false // forward
			}
			return true
		}, Do: answer(409)})
		tg, _ := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 4, 1000)
		// job: 409 (b missing), b: 409, a: 409, deep: made; back down a, b, job; then run.
		in.ExpectSent(t, "MKCOL", 8)
		if got := onDisk(t, up, "deep", "a", "b", run.JobID, run.RunID, part); digest(got) != targettest.NewContent(4, 1000).Digest() {
			t.Fatal("part under the created parents differs from what was put")
		}
	})

	t.Run("MkcolParentWalkIsBounded", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		for i := range 40 {
			base += fmt.Sprintf("l%d/", i)
		}
		in.Add(&targettest.Rule{Key: "MKCOL", Times: -1, Do: answer(409)})
		tg, _ := newTarget(t, base, up, webdav.Options{})
		_, err := tg.Put(ctx, targettest.NewRun(t), part, targettest.NewContent(1, 1), 1)
		expectErr(t, err, targets.KindConfig, 409, 0)
		// The collection and 32 parents.
		in.ExpectSent(t, "MKCOL", 33)
	})

	t.Run("PropfindWithoutSlash404", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		tg, _ := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 1, 123)
		targettest.Put(t, tg, run, "naïve name#1", 2, 45)
		in.Add(&targettest.Rule{Key: "PROPFIND", Times: -1, Match: func(r *http.Request) bool { return !strings.HasSuffix(r.URL.Path, "/") }, Do: answer(404)})
		entries, err := tg.List(ctx, run.JobID+"/"+run.RunID)
		if err != nil {
			t.Fatal(err)
		}
		in.ExpectSent(t, "PROPFIND", 2)
		if len(entries) != 2 || entries[0].Name != "naïve name#1" || entries[0].Size != 45 || entries[0].Kind != webdav.KindFile ||
			entries[1].Name != part || entries[1].Size != 123 || entries[1].MTime.IsZero() ||
			!strings.HasSuffix(entries[1].Href, "/"+run.JobID+"/"+run.RunID+"/"+part) {
			t.Fatalf("entries = %+v", entries)
		}
		jobs, err := tg.List(ctx, "/"+run.JobID+"/")
		if err != nil || len(jobs) != 1 || jobs[0].Name != run.RunID || jobs[0].Kind != webdav.KindDir {
			t.Fatalf("job listing = %+v, %v", jobs, err)
		}
		if _, err := tg.List(ctx, run.JobID+"/../x"); !errors.Is(err, targets.ErrInvalidPath) {
			t.Fatalf("listing with ..: %v", err)
		}
	})

	t.Run("DeleteWalkIsBounded", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		tg, _ := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 1, 10)
		in.Add(&targettest.Rule{Key: "DELETE", Times: 1, Match: suffix(run.RunID + "/"), Do: answer(405)})
		in.Add(&targettest.Rule{Key: "PROPFIND", Times: -1, Do: func(w http.ResponseWriter, r *http.Request) {
			var doc bytes.Buffer
			doc.WriteString(`<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">`)
			for i := range 10001 {
				doc.WriteString(`<D:response><D:href>` + r.URL.Path + "f" + strconv.Itoa(i) + `</D:href></D:response>`)
			}
			doc.WriteString(`</D:multistatus>`)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(207)
			_, _ = w.Write(doc.Bytes())
		}})
		_, err := tg.DeleteRun(ctx, run)
		if targets.KindOf(err) != targets.KindUnknown || !strings.Contains(err.Error(), "10000") {
			t.Fatalf("delete of a huge run: %v", err)
		}
		// Only the refused collection DELETE: no member was deleted.
		in.ExpectSent(t, "DELETE", 1)
		targettest.Expect(t, tg, run, part, 1, 10)
	})

	t.Run("DeleteFallsBackToMembers", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		tg, _ := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 1, 10)
		targettest.Put(t, tg, run, "payload.part000002", 2, 10)
		targettest.Put(t, tg, run, targets.EntriesName, 3, 10)
		in.Add(&targettest.Rule{Key: "DELETE", Times: 1, Match: suffix(run.RunID + "/"), Do: answer(405)})
		res, err := tg.CleanupRun(ctx, run)
		if err != nil || res != targets.CleanupDeleted {
			t.Fatalf("cleanup = %q, %v", res, err)
		}
		// Refused collection DELETE, three files, then the emptied collection.
		in.ExpectSent(t, "DELETE", 5)
		targettest.ExpectMissing(t, tg, run, part)
		if _, err := tg.List(ctx, run.JobID+"/"+run.RunID); !errors.Is(err, targets.ErrNotExist) {
			t.Fatalf("run collection still listed: %v", err)
		}
	})

	t.Run("RedirectNotFollowed", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Key: "PUT", Times: -1, Do: answer(307, "Location", "/elsewhere/")})
		tg, _ := newTarget(t, base, up, webdav.Options{})
		_, err := tg.Put(ctx, targettest.NewRun(t), targets.ManifestName, targettest.NewContent(1, 10), 10)
		expectErr(t, err, targets.KindConfig, 307, 1)
		if n := in.Count("GET") + in.Count("PUT"); n != 1 {
			t.Fatalf("%d GET/PUT requests, want the 1 PUT", n)
		}
	})

	t.Run("GetRetriedBeforeFirstByte", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		tg, s := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 5, 70000)
		in.Add(&targettest.Rule{Key: "GET", Times: 1, Do: answer(503)})
		in.Add(&targettest.Rule{Key: "GET", Times: 1, Do: func(w http.ResponseWriter, r *http.Request) {
			// Headers, then the connection dies before any body byte.
			w.Header().Set("Content-Length", "70000")
			w.WriteHeader(200)
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}})
		targettest.Expect(t, tg, run, part, 5, 70000)
		in.ExpectSent(t, "GET", 3)
		targettest.ExpectSleeps(t, s, time.Second, 2*time.Second)
	})

	t.Run("GetCutAfterBytesIsNotRetried", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		tg, _ := newTarget(t, base, up, webdav.Options{})
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, part, 5, 70000)
		in.Add(&targettest.Rule{Key: "GET", Times: -1, Do: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "70000")
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
		in.ExpectSent(t, "GET", 1)
	})

	t.Run("RateLimits", func(t *testing.T) {
		t.Parallel()
		_, base := newInjector(t, up)
		tg, s := newTarget(t, base, up, webdav.Options{Limits: webdav.Limits{PutQPS: 2}})
		run := targettest.NewRun(t)
		for range 3 {
			targettest.Put(t, tg, run, targets.ManifestName, 1, 10)
		}
		// The fake clock stands still: the 2nd PUT waits 0.5 s, the 3rd 1 s (burst 1).
		targettest.ExpectSleeps(t, s, 500*time.Millisecond, time.Second)
	})

	t.Run("Concurrency", func(t *testing.T) {
		t.Parallel()
		for _, limit := range []int{1, 3} {
			in, base := newInjector(t, up)
			tg, _ := newTarget(t, base, up, webdav.Options{Limits: webdav.Limits{Concurrency: limit}})
			run := targettest.NewRun(t)
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() { targettest.Put(t, tg, run, fmt.Sprintf("payload.part%06d", i+1), int64(i), 100<<10) })
			}
			wg.Wait()
			peak := in.MaxInFlight()
			if peak > limit {
				t.Fatalf("concurrency %d: %d requests in flight at once", limit, peak)
			}
		}
	})

	t.Run("StalledRequestTimesOut", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		entered := make(chan struct{})
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		in.Add(&targettest.Rule{Key: "PUT", Times: 1, Do: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			close(entered)
			select { // the server never answers
			case <-r.Context().Done():
			case <-release:
			}
		}})
		clk := clock.NewFake(epoch)
		tg, _ := newTarget(t, base, up, webdav.Options{Clock: clk, MaxPutAttempts: 1})
		errc := make(chan error, 1)
		go func() {
			_, err := tg.Put(ctx, targettest.NewRun(t), targets.ManifestName, targettest.NewContent(1, 1000), 1000)
			errc <- err
		}()
		<-entered
		clk.Advance(59 * time.Second)
		select {
		case err := <-errc:
			t.Fatalf("put ended before the request timeout: %v", err)
		default:
		}
		clk.Advance(2 * time.Second)
		expectErr(t, <-errc, targets.KindTimeout, 0, 1)
	})

	t.Run("NoSecretsInLogsOrErrors", func(t *testing.T) {
		t.Parallel()
		in, base := newInjector(t, up)
		in.Add(&targettest.Rule{Key: "PUT", Times: 1, Do: answer(503)})
		in.Add(&targettest.Rule{Key: "PUT", Times: 1, Match: suffix("secret-probe"), Do: answer(401)})
		var logs testtool.LockedBuffer
		tg, _ := newTarget(t, base, up, webdav.Options{}, &logs)
		run := targettest.NewRun(t)
		targettest.Put(t, tg, run, targets.ManifestName, 1, 10)
		_, err := tg.Put(ctx, run, "secret-probe", targettest.NewContent(1, 10), 10)
		if err == nil {
			t.Fatal("401 put succeeded")
		}
		if !strings.Contains(logs.String(), "retrying") {
			t.Fatalf("no retry was logged: %s", logs.String())
		}
		for _, text := range []string{logs.String(), err.Error(), fmt.Sprintf("%+v", err)} {
			if strings.Contains(text, up.pass) || strings.Contains(text, "Basic ") {
				t.Fatalf("credentials leaked into %q", text)
			}
		}
	})
}
