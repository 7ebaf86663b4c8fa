// Package testtool finds and starts the real external programs that tests run against
// (a WebDAV server, an SMTP server, a browser), on free loopback ports, stopped when the test ends.
package testtool

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// RequireEnv is set to 1 by scripts/test: a missing tool then fails the test instead of skipping it,
// so CI can never pass by silently skipping.
const RequireEnv = "BASTION_TEST_REQUIRE_TOOLS"

// Require returns the path of an external program, looked up on PATH and in the repository's
// .cache/bin (where scripts/deps installs Go-built tools). Without it the test is skipped, or
// fails when RequireEnv=1.
func Require(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if root := RepoRoot(); root != "" {
		p := filepath.Join(root, ".cache", "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s is not installed; scripts/deps installs it", name)
	}
	t.Skipf("%s is not installed (run scripts/deps, or scripts/test which fails instead of skipping)", name)
	return ""
}

// RepoRoot is the repository root, found from this source file's location.
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// LockedBuffer is a bytes.Buffer that concurrent writers (a process's stdout and stderr, a
// logger) and a reader may share.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
