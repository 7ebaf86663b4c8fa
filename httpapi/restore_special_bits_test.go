package httpapi_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

// TestRestoreSpecialBitsOption: a restore strips setuid/setgid bits unless the request says
// "keep_special_bits": true; the field must be a boolean.
func TestRestoreSpecialBitsOption(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job, run := uuidN(1, 1), uuidN(2, 1)
	bh.insertJob(t, job, fsSpec)
	src, base := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "bk")
	testtool.WriteFile(t, filepath.Join(src, "su"), []byte("#!/bin/sh\n"), 0o755, time.Now())
	if err := os.Chmod(filepath.Join(src, "su"), 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	bh.realSnapshot(t, job, run, src, base)

	for _, tc := range []struct {
		name string
		keep any // omitted when nil
		want os.FileMode
	}{
		{"Default", nil, 0o755},
		{"False", false, 0o755},
		{"Kept", true, 0o755 | os.ModeSetuid | os.ModeSetgid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "dest")
			body := map[string]any{"destination": map[string]any{"type": "local_fs", "node_id": "hub", "directory": dest}}
			if tc.keep != nil {
				body["keep_special_bits"] = tc.keep
			}
			st, resp := bh.c.Post(t, "/api/runs/"+run+"/restore", body)
			if st != http.StatusOK {
				t.Fatalf("restore: %d %v", st, resp)
			}
			op := bh.waitOperation(t, resp["op_id"].(string))
			if op["status"] != "success" {
				t.Fatalf("operation: %v", op)
			}
			if got := op["summary"].(map[string]any)["keep_special_bits"]; (got == true) != (tc.keep == true) {
				t.Fatalf("summary keep_special_bits = %v", got)
			}
			fi, err := os.Lstat(filepath.Join(testtool.ArchivePath(dest, src), "su"))
			if err != nil || fi.Mode() != tc.want {
				t.Fatalf("su restored as %v (%v), want %v", fi.Mode(), err, tc.want)
			}
		})
	}
	// An operator restores, but only an administrator keeps special bits; a viewer restores
	// nothing. Refused requests create nothing.
	t.Run("ByRole", func(t *testing.T) {
		op := bh.AddUser(t, bh.c, "olga", "operator")
		viewer := bh.AddUser(t, bh.c, "victor", "viewer")
		restore := func(c *apitest.Client, keep bool) (*apitest.Response, string) {
			dest := filepath.Join(t.TempDir(), "dest")
			body := map[string]any{"destination": map[string]any{"type": "local_fs", "node_id": "hub", "directory": dest}}
			if keep {
				body["keep_special_bits"] = true
			}
			return c.Do(t, "POST", "/api/runs/"+run+"/restore", body), dest
		}
		for _, tc := range []struct {
			name string
			c    *apitest.Client
			keep bool
			code string
		}{{"OperatorKeep", op, true, "keep_special_bits_forbidden"}, {"Viewer", viewer, false, "forbidden"}} {
			resp, dest := restore(tc.c, tc.keep)
			if resp.Status != http.StatusForbidden || resp.ErrorCode() != tc.code {
				t.Fatalf("%s: %s", tc.name, resp)
			}
			if _, err := os.Stat(dest); err == nil {
				t.Fatalf("%s: a refused restore created its destination", tc.name)
			}
		}
		resp, _ := restore(op, false)
		if resp.Status != http.StatusOK {
			t.Fatalf("operator restore: %s", resp)
		}
		bh.waitOperation(t, resp.JSON(t)["op_id"].(string))
	})
	t.Run("NotABoolean", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "dest")
		resp := bh.c.Do(t, "POST", "/api/runs/"+run+"/restore", map[string]any{"destination_dir": dest, "keep_special_bits": "yes"})
		var e struct {
			Error   string `json:"error"`
			Details struct {
				Field string `json:"field"`
			} `json:"details"`
		}
		resp.Decode(t, &e)
		if resp.Status != http.StatusBadRequest || e.Error != "invalid_json" || e.Details.Field != "keep_special_bits" {
			t.Fatalf("keep_special_bits \"yes\": %s", resp)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Fatal("a refused restore created its destination")
		}
	})
}
