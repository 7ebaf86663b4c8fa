package testtool

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// StartRcloneWebDAV serves dir over WebDAV with `rclone serve webdav` on a free loopback port,
// with Basic auth, and stops it when the test ends. It returns the base URL (ending in "/") and
// the credentials. The test is skipped when rclone is missing (see Require).
func StartRcloneWebDAV(t testing.TB, dir string) (baseURL, user, pass string) {
	t.Helper()
	bin := Require(t, "rclone")
	user = "bastion"
	pass = randHex(t, 16)

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
	out, exited := startServer(t, "rclone", cmd)

	baseURL = "http://" + addr + "/"
	status, err := waitHTTP(t, exited, func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, "PROPFIND", baseURL, nil)
		if err == nil {
			req.SetBasicAuth(user, pass)
			req.Header.Set("Depth", "0")
		}
		return req, err
	})
	if err == nil && status/100 != 2 {
		err = fmt.Errorf("answered %d %s", status, http.StatusText(status))
	}
	if err != nil {
		t.Fatalf("rclone serve webdav on %s: %v\n%s", addr, err, strings.TrimSpace(out.String()))
	}
	return baseURL, user, pass
}
