package httpapi_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/testtool"
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
