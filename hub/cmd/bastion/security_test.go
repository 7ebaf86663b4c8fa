package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

func noEnv(string) string { return "" }

// TestWebDAVCredentialSurvivesRestart is the README's first steps: set up, log in, store a WebDAV
// credential, restart the Hub on the same data directory, read the credential back.
func TestWebDAVCredentialSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, stop, _ := startHub(t, "--data-dir", dir)
	c := (&apitest.Hub{URL: base}).Login(t)
	cred := map[string]any{"username": "alice", "password": "nas-Pa55word-restart"}
	if st, m := c.Put(t, "/api/secrets/webdav/nas", cred); st != 204 {
		t.Fatalf("store credential: %d %v", st, m)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, "master.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("master.key after the first start: %v %v", info, err)
	}

	base, stop, logs := startHub(t, "--data-dir", dir)
	defer stop()
	c = (&apitest.Hub{URL: base}).Login(t)
	st, m := c.Get(t, "/api/secrets/webdav/nas")
	if st != 200 || m["name"] != "nas" || m["username"] != "alice" || m["password"] != "nas-Pa55word-restart" {
		t.Fatalf("credential after restart: %d %v", st, m)
	}
	if strings.Contains(logs.String(), "nas-Pa55word-restart") || strings.Contains(logs.String(), apitest.Password) {
		t.Fatal("a secret reached the Hub's log")
	}
}

// TestHubRefusesToStartWithoutItsKey: once secrets exist, a missing, damaged or exposed
// master.key stops the Hub before it listens, and no new key is written.
func TestHubRefusesToStartWithoutItsKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, stop, _ := startHub(t, "--data-dir", dir)
	c := (&apitest.Hub{URL: base}).Login(t)
	c.Put(t, "/api/secrets/webdav/nas", map[string]any{"username": "alice", "password": "pw"})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "master.key")
	good, _ := os.ReadFile(keyPath)
	start := func() error { return runExpectingFailure(t, "--data-dir", dir) }
	for _, tc := range []struct {
		name    string
		prepare func()
		want    string
	}{
		{"Missing", func() { os.Remove(keyPath) }, "refusing to generate a new key"},
		{"Corrupt", func() { os.WriteFile(keyPath, good[:len(good)/2], 0o600) }, "refusing to start"},
		{"Foreign", func() {
			k, _ := secrets.NewKeyring(time.Now())
			secrets.WriteKeyringFile(keyPath, k)
		}, "does not decrypt the stored secrets"},
		{"WorldReadable", func() { os.WriteFile(keyPath, good, 0o600); os.Chmod(keyPath, 0o644) }, "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.prepare()
			before, _ := os.ReadFile(keyPath)
			err := start()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("start = %v, want an error saying %q", err, tc.want)
			}
			if after, _ := os.ReadFile(keyPath); !bytes.Equal(before, after) {
				t.Fatal("the refused start changed master.key")
			}
		})
	}
}

// runExpectingFailure runs the Hub and returns its start-up error; a Hub that comes up instead
// fails the test (and is stopped).
func runExpectingFailure(t *testing.T, args ...string) error {
	t.Helper()
	port := testtool.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append(args, "--port", fmt.Sprint(port)), noEnv, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return err
		default:
		}
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/health", port)); err == nil {
			resp.Body.Close()
			cancel()
			<-done
			t.Fatal("the Hub started")
		}
		time.Sleep(20 * time.Millisecond) // polling an external process until a deadline
	}
	t.Fatal("the Hub neither started nor failed")
	return nil
}

func keypack(t *testing.T, stdin string, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runIO(context.Background(), append([]string{"keypack"}, args...), func(k string) string { return env[k] },
		strings.NewReader(stdin), &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestKeypackExportImportRotate(t *testing.T) {
	t.Parallel()
	const pw = "keypack-Pa55word-unique-6612"
	src, dst := t.TempDir(), t.TempDir()
	k, _ := secrets.NewKeyring(time.Now())
	if err := secrets.WriteKeyringFile(filepath.Join(src, "master.key"), k); err != nil {
		t.Fatal(err)
	}
	sealed, _ := k.Seal("hub", "webdav", "nas", []byte("payload"))
	pack := filepath.Join(t.TempDir(), "bastion.keypack")
	var outputs []string

	out, err := keypack(t, "", map[string]string{"BASTION_KEYPACK_PASSWORD": pw}, "export", "--data-dir", src, "--out", pack)
	outputs = append(outputs, out)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if info, err := os.Stat(pack); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("keypack file: %v %v", info, err)
	}
	raw, _ := os.ReadFile(pack)
	if bytes.Contains(raw, []byte(pw)) || bytes.Contains(raw, []byte("key_b64")) {
		t.Fatal("the keypack holds the password or the keyring in clear")
	}

	// Import into an empty data directory, password on stdin.
	out, err = keypack(t, pw+"\n", nil, "import", "--data-dir", dst, "--in", pack, "--password-stdin")
	outputs = append(outputs, out)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	imported, err := secrets.ReadKeyringFile(filepath.Join(dst, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := imported.Open("hub", "webdav", "nas", sealed); err != nil || string(pt) != "payload" {
		t.Fatalf("imported key does not open a secret of the source: %v", err)
	}

	// No overwrite without --force; a wrong password with --force changes nothing.
	before, _ := os.ReadFile(filepath.Join(dst, "master.key"))
	out, err = keypack(t, "", nil, "import", "--data-dir", dst, "--in", pack, "--password", pw)
	outputs = append(outputs, out)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("import over an existing master.key without --force: %v", err)
	}
	out, err = keypack(t, "", nil, "import", "--data-dir", dst, "--in", pack, "--force", "--password", "not-"+pw)
	outputs = append(outputs, out)
	if !errors.Is(err, secrets.ErrWrongPassword) {
		t.Fatalf("import with a wrong password: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dst, "master.key")); !bytes.Equal(before, after) {
		t.Fatal("a failed import changed master.key")
	}
	out, err = keypack(t, "", nil, "import", "--data-dir", dst, "--in", pack, "--force", "--password", pw)
	outputs = append(outputs, out)
	if err != nil || !strings.Contains(out, "master.key.replaced-") {
		t.Fatalf("forced import: %v\n%s", err, out)
	}

	// Rotate: a new active key, the old one kept.
	out, err = keypack(t, "", nil, "rotate", "--data-dir", dst)
	outputs = append(outputs, out)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	rotated, _ := secrets.ReadKeyringFile(filepath.Join(dst, "master.key"))
	if rotated.ActiveKID() != 2 || len(rotated.KIDs()) != 2 {
		t.Fatalf("after rotate: %v", rotated)
	}
	if pt, err := rotated.Open("hub", "webdav", "nas", sealed); err != nil || string(pt) != "payload" {
		t.Fatalf("rotated keyring lost the old key: %v", err)
	}

	for _, o := range outputs {
		if strings.Contains(o, pw) {
			t.Fatalf("the keypack password was printed: %s", o)
		}
	}
}

func TestKeypackRefusesBadUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		stdin string
		env   map[string]string
		args  []string
		want  string
	}{
		{"NoSubcommand", "", nil, nil, "missing subcommand"},
		{"UnknownSubcommand", "", nil, []string{"burn"}, "unknown subcommand"},
		{"ExportWithoutOut", "", nil, []string{"export", "--data-dir", dir, "--password", "x"}, "--out FILE is required"},
		{"ImportWithoutIn", "", nil, []string{"import", "--data-dir", dir, "--password", "x"}, "--in FILE is required"},
		{"NoPassword", "", nil, []string{"export", "--data-dir", dir, "--out", filepath.Join(dir, "p")}, "a password is required"},
		{"EmptyStdin", "\n", nil, []string{"export", "--data-dir", dir, "--out", filepath.Join(dir, "p"), "--password-stdin"}, "empty"},
		{"TwoPasswords", "x\n", nil, []string{"export", "--data-dir", dir, "--out", filepath.Join(dir, "p"), "--password-stdin", "--password", "y"}, "not both"},
		{"ExportWithoutKey", "", map[string]string{"BASTION_KEYPACK_PASSWORD": "x"}, []string{"export", "--data-dir", dir, "--out", filepath.Join(dir, "p")}, "there is no"},
		{"RotateWithoutKey", "", nil, []string{"rotate", "--data-dir", dir}, "there is no"},
		{"ImportMissingFile", "", nil, []string{"import", "--data-dir", dir, "--in", filepath.Join(dir, "nope"), "--password", "x"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keypack(t, tc.stdin, tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("refused commands left files: %v", entries)
	}
}

// TestCrossSiteWebDAVListSendsNoCredential (security issue 11.2) against a running Hub: a link on
// another site makes the admin's browser GET a listing of the attacker's server with a stored
// credential. The Hub answers 400 credential_origin_mismatch and nothing reaches that server;
// a local_dir job inside the data directory, through a symlink, is refused too (11.5).
func TestCrossSiteWebDAVListSendsNoCredential(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var reached []string
	rogue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, r.Method+" "+r.URL.String()+" auth="+r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusMultiStatus)
	}))
	defer rogue.Close()
	dir := t.TempDir()
	base, stop, logs := startHub(t, "--data-dir", dir)
	defer stop()
	c := (&apitest.Hub{URL: base}).Login(t)
	if st, m := c.Put(t, "/api/secrets/webdav/nas", map[string]any{"username": "alice", "password": "nas-Pa55word-origin",
		"base_url": "https://dav.example.com/remote.php/dav/"}); st != 204 {
		t.Fatalf("store credential: %d %v", st, m)
	}
	q := url.Values{"base_url": {rogue.URL + "/"}, "secret_name": {"nas"}, "path": {"/"}}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/nodes/hub/webdav/list?"+q.Encode(), nil)
	req.AddCookie(c.SessionCookie()) // SameSite=Lax: sent with a cross-site top-level GET; no CSRF token
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"credential_origin_mismatch"`) {
		t.Fatalf("cross-site listing: %d %s", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reached) != 0 {
		t.Fatalf("the credential's request reached the other server: %q", reached)
	}
	if strings.Contains(logs.String(), "nas-Pa55word-origin") {
		t.Fatal("the credential reached the Hub's log")
	}

	link := filepath.Join(t.TempDir(), "to-data")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	st, m := c.Post(t, "/api/jobs", map[string]any{"name": "inside", "overlap_policy": "queue",
		"spec": map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{"/srv"}},
			"target": map[string]any{"type": "local_dir", "base_dir": filepath.Join(link, "backups")}}})
	if st != 400 || m["error"] != "target_inside_data_dir" {
		t.Fatalf("job inside the data dir through a symlink: %d %v", st, m)
	}
}
