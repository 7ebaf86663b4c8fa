package testtool_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/testtool"
)

func TestStartRcloneWebDAV(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, user, pass := testtool.StartRcloneWebDAV(t, dir)
	if !strings.HasSuffix(base, "/") || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("base URL %q", base)
	}
	get := func(u, p string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, base+"hello.txt", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(u, p)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(user, pass); code != 200 || body != "hello" {
		t.Fatalf("GET with credentials = %d %q", code, body)
	}
	if code, _ := get(user, "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("GET with a wrong password = %d, want 401", code)
	}
}
