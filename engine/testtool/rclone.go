package testtool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// StartRcloneWebDAV serves dir over WebDAV with `rclone serve webdav` on a free loopback port,
// with Basic auth, and stops it when the test ends. It returns the base URL (ending in "/") and
// the credentials. The test is skipped when rclone is missing (see Require).
func StartRcloneWebDAV(t testing.TB, dir string) (baseURL, user, pass string) {
	t.Helper()
	bin := Require(t, "rclone")
	user = "bastion"
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random password: %v", err)
	}
	pass = hex.EncodeToString(b[:])

	// An empty config file keeps rclone from reading or complaining about the user's own.
	conf := filepath.Join(t.TempDir(), "rclone.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatalf("write rclone config: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	cmd := exec.Command(bin, "serve", "webdav",
		"--config", conf,
		"--addr", addr,
		"--user", user, "--pass", pass,
		dir)
	out := &LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rclone: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("rclone output:\n%s", strings.TrimSpace(out.String()))
		}
	})

	baseURL = "http://" + addr + "/"
	if err := waitAnswering(t, baseURL, user, pass, exited); err != nil {
		t.Fatalf("rclone serve webdav on %s: %v\n%s", addr, err, strings.TrimSpace(out.String()))
	}
	return baseURL, user, pass
}

// waitAnswering polls baseURL with an authenticated PROPFIND until the server answers with a
// success status, the process exits, or the deadline passes. Polling an external process that
// gives no readiness signal is the one place a short wait between attempts is unavoidable.
func waitAnswering(t testing.TB, baseURL, user, pass string, exited <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if td, ok := d.Deadline(); ok && td.Before(deadline) {
			deadline = td
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	client := &http.Client{}
	wait := 5 * time.Millisecond
	for {
		req, err := http.NewRequestWithContext(ctx, "PROPFIND", baseURL, nil)
		if err != nil {
			return err
		}
		req.SetBasicAuth(user, pass)
		req.Header.Set("Depth", "0")
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			return fmt.Errorf("answered %s", resp.Status)
		}
		timer := time.NewTimer(wait)
		select {
		case <-exited:
			timer.Stop()
			return fmt.Errorf("rclone exited before answering")
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("not answering before the deadline: %w", err)
		case <-timer.C:
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}
