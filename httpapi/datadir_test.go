package httpapi_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestJobTargetInsideDataDirRefused (security issue 11.5): a local_dir target in the Hub's data
// directory, directly or through a symlink, is refused with 400 and no job is stored; the Hub
// empties parts of that directory at start.
func TestJobTargetInsideDataDirRefused(t *testing.T) {
	t.Parallel()
	jh := startJobsHub(t)
	links := t.TempDir()
	toData := filepath.Join(links, "to-data")
	if err := os.Symlink(jh.DataDir, toData); err != nil {
		t.Fatal(err)
	}
	toParent := filepath.Join(links, "to-parent")
	if err := os.Symlink(filepath.Dir(jh.DataDir), toParent); err != nil {
		t.Fatal(err)
	}
	spec := func(base string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"v": 1, "type": "filesystem", "source": map[string]any{"paths": []string{"/srv"}},
			"target": map[string]any{"type": "local_dir", "base_dir": base}})
		return b
	}
	for name, base := range map[string]string{
		"Equal":                jh.DataDir,
		"Runs":                 filepath.Join(jh.DataDir, "runs"),
		"NotYetCreated":        filepath.Join(jh.DataDir, "backups", "nightly"),
		"Symlink":              toData,
		"BelowSymlink":         filepath.Join(toData, "backups"),
		"ThroughSymlinkParent": filepath.Join(toParent, filepath.Base(jh.DataDir), "b"),
	} {
		t.Run(name, func(t *testing.T) {
			resp := jh.c.Do(t, "POST", "/api/jobs", jobBody(map[string]any{"spec": spec(base)}))
			if resp.Status != 400 || resp.ErrorCode() != "target_inside_data_dir" || resp.JSON(t)["details"].(map[string]any)["field"] != "spec.target.base_dir" {
				t.Fatalf("%s: %s", base, resp)
			}
		})
	}
	if items := jh.c.Do(t, "GET", "/api/jobs", nil).JSON(t)["items"].([]any); len(items) != 0 {
		t.Fatalf("a refused job was stored: %v", items)
	}
	// A directory beside the data directory is fine, and so is one whose name only starts alike.
	for _, base := range []string{filepath.Join(links, "backups"), jh.DataDir + "-backups"} {
		if resp := jh.c.Do(t, "POST", "/api/jobs", jobBody(map[string]any{"spec": spec(base)})); resp.Status != 200 {
			t.Fatalf("%s: %s", base, resp)
		}
	}
	// Updating a job into the data directory is refused the same way.
	created := jh.c.Do(t, "POST", "/api/jobs", jobBody(map[string]any{"name": "moves", "spec": spec(filepath.Join(links, "b2"))})).JSON(t)
	if resp := jh.c.Do(t, "PUT", "/api/jobs/"+created["id"].(string), jobBody(map[string]any{"name": "moves", "spec": spec(toData)})); resp.Status != 400 ||
		resp.ErrorCode() != "target_inside_data_dir" {
		t.Fatalf("update into the data dir: %s", resp)
	}
}
