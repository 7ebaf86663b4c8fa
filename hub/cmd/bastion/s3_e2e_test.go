package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/storage"
)

// s3Target is a v1 job spec's target object for the bucket of srv at endpoint.
func s3Target(srv testtool.S3Server, endpoint, prefix string) map[string]any {
	return map[string]any{"type": "s3", "endpoint": endpoint, "region": srv.Region, "bucket": srv.Bucket,
		"prefix": prefix, "secret_name": "store", "path_style": true, "part_size_bytes": 1 << 20}
}

// TestS3BackupRestoreVerifyDelete drives the real bastion process against a real S3 server
// (versitygw, posix backend): store an S3 credential bound to the server's origin, back up to a
// prefix in a bucket, see the snapshot, restore it and compare bytes, verify, verify again after
// damaging a part, then delete the snapshot and see its objects go. With and without age.
func TestS3BackupRestoreVerifyDelete(t *testing.T) {
	t.Parallel()
	srv := testtool.StartVersityGW(t)
	p := startHubProcess(t, t.TempDir())
	c := p.client(t)
	src := filepath.Join(t.TempDir(), "src")
	testtool.BuildTree(t, src, 3<<20)
	if st, body := c.Put(t, "/api/secrets/s3/store", map[string]any{"access_key_id": srv.AccessKey,
		"secret_access_key": srv.SecretKey, "allowed_origins": []string{srv.Endpoint}}); st/100 != 2 {
		t.Fatalf("store s3 secret: %d %v", st, body)
	}
	if st, body := c.Get(t, "/api/secrets/s3/store"); st != http.StatusOK || fmt.Sprint(body["allowed_origins"]) != "["+srv.Endpoint+"]" {
		t.Fatalf("secret as read back: %d %v", st, body)
	}

	for _, tc := range []struct {
		name string
		age  bool
	}{{"Plain", false}, {"Age", true}} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "hosts/" + strings.ToLower(tc.name)
			spec := map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{src}},
				"target": s3Target(srv, srv.Endpoint, prefix)}
			if tc.age {
				spec["pipeline"] = map[string]any{"encryption": map[string]any{"type": "age_x25519", "key_name": "e2e-s3"}}
			}
			job := createJob(t, c, "s3 "+tc.name, spec)
			runID := runNow(t, c, job)
			if run := waitRunEnd(t, c, runID); run["status"] != "success" {
				t.Fatalf("run: %v\nevents %v", run, eventKinds(t, c, "/api/runs/"+runID+"/events"))
			}
			requireOneSnapshot(t, c, job, runID)
			// The posix backend keeps each object as a file: bucket/prefix/job/run/name.
			runDir := filepath.Join(srv.Dir, srv.Bucket, filepath.FromSlash(prefix), job, runID)
			for _, name := range []string{"manifest.json", "entries.jsonl.zst", "complete.json", "payload.part000001", "payload.part000003"} {
				if _, err := os.Stat(filepath.Join(runDir, name)); err != nil {
					t.Fatalf("object %s: %v", name, err)
				}
			}

			restoreToHubAndVerify(t, c, runID, src)
			damagedPartFailsVerify(t, c, runID, filepath.Join(runDir, "payload.part000002"))

			if st, body := c.Post(t, "/api/jobs/"+job+"/snapshots/"+runID+"/delete", nil); st/100 != 2 {
				t.Fatalf("delete snapshot: %d %v", st, body)
			}
			poll(t, "snapshot deleted", func() bool {
				_, s := c.Get(t, "/api/jobs/"+job+"/snapshots/"+runID)
				return s["status"] == "deleted"
			})
			if entries, _ := os.ReadDir(runDir); len(entries) != 0 {
				t.Fatalf("objects left after the delete: %v", entries)
			}
		})
	}
	if strings.Contains(p.logs.String(), srv.SecretKey) {
		t.Fatal("the S3 secret key appears in the Hub's logs")
	}
}

// TestS3CredentialGoesOnlyToItsOrigin: a job naming another endpoint than the one the S3
// credential is bound to is refused when saved, and the other server is never reached.
func TestS3CredentialGoesOnlyToItsOrigin(t *testing.T) {
	t.Parallel()
	srv := testtool.StartVersityGW(t)
	rogue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the other server was reached: %s %s (Authorization %q)", r.Method, r.URL, r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(rogue.Close)
	p := startHubProcess(t, t.TempDir())
	c := p.client(t)
	if st, body := c.Put(t, "/api/secrets/s3/store", map[string]any{"access_key_id": srv.AccessKey,
		"secret_access_key": srv.SecretKey, "allowed_origins": []string{srv.Endpoint}}); st/100 != 2 {
		t.Fatalf("store s3 secret: %d %v", st, body)
	}
	src := t.TempDir()
	testtool.WriteFile(t, filepath.Join(src, "a.txt"), []byte("a"), 0o644, testtool.TreeTime)
	resp := c.Do(t, "POST", "/api/jobs", map[string]any{"name": "steal", "overlap_policy": "queue",
		"spec": map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{src}},
			"target": s3Target(srv, rogue.URL, "x")}})
	if resp.Status != http.StatusBadRequest || resp.ErrorCode() != secrets.CodeOriginMismatch {
		t.Fatalf("job naming another endpoint: %s", resp)
	}
	if strings.Contains(string(resp.Body), srv.SecretKey) {
		t.Fatal("the answer carries the secret key")
	}
}

// TestS3KilledHubCleansUpTheIncompleteRun kills the Hub mid-backup to S3 (a proxy in front of
// versitygw stores the first part and holds every later one), ages the run past the cleanup
// delay and restarts the Hub: incomplete cleanup must remove the run's objects.
func TestS3KilledHubCleansUpTheIncompleteRun(t *testing.T) {
	t.Parallel()
	srv := testtool.StartVersityGW(t)
	gate := startGatedS3(t, srv.Endpoint)
	data, src := t.TempDir(), filepath.Join(t.TempDir(), "src")
	for i := 0; i < 3; i++ {
		testtool.WriteFile(t, filepath.Join(src, fmt.Sprintf("f%d.bin", i)), testtool.RandBytes(1<<20, uint64(i)), 0o644, testtool.TreeTime)
	}
	p := startHubProcess(t, data)
	c := p.client(t)
	if st, body := c.Put(t, "/api/secrets/s3/store", map[string]any{"access_key_id": srv.AccessKey,
		"secret_access_key": srv.SecretKey, "allowed_origins": []string{gate.url}}); st/100 != 2 {
		t.Fatalf("store s3 secret: %d %v", st, body)
	}
	job := createJob(t, c, "s3 crash", map[string]any{"v": 1, "type": "filesystem",
		"source": map[string]any{"paths": []string{src}}, "target": s3Target(srv, gate.url, "crash")})
	runID := runNow(t, c, job)
	runDir := filepath.Join(srv.Dir, srv.Bucket, "crash", job, runID)
	gate.waitMidRun(t)
	p.kill(t)
	if _, err := os.Stat(filepath.Join(runDir, "payload.part000001")); err != nil {
		t.Fatalf("the first part is not on the target: %v", err)
	}
	db, err := storage.Open(context.Background(), filepath.Join(data, "bastion.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().Exec(context.Background(), `UPDATE runs SET started_at = started_at - 8*86400 WHERE id = ?`, runID); err != nil {
		t.Fatal(err)
	}
	db.Close()

	p = startHubProcess(t, data)
	c = p.client(t)
	if run := waitRunEnd(t, c, runID); run["status"] != "failed" || run["error"] != "hub_restarted" {
		t.Fatalf("run after restart: %v", run)
	}
	// The objects go before the task is marked done, so wait for the task, then look at the bucket.
	var task map[string]any
	poll(t, "incomplete cleanup task done", func() bool {
		st, body := c.Get(t, "/api/maintenance/incomplete-cleanup/"+runID)
		if st != http.StatusOK {
			return false
		}
		task, _ = body["task"].(map[string]any)
		return task != nil && task["status"] == "done"
	})
	if entries, _ := os.ReadDir(runDir); len(entries) != 0 {
		t.Fatalf("cleanup task %v is done but the run still has %d objects", task, len(entries))
	}
}

// gatedS3 is a reverse proxy in front of an S3 server behind a partGate. The Host header is
// kept, so the client's signature (made for the proxy's address) still holds.
type gatedS3 struct {
	*partGate
	url string
}

func startGatedS3(t *testing.T, upstream string) *gatedS3 {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedS3{partGate: newPartGate()}
	g.url = g.serve(t, g.wrap(httputil.NewSingleHostReverseProxy(u))).URL
	return g
}
