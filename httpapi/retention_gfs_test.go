package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// The preview counts GFS periods in the job's timezone and explains each snapshot; today's
// fields (reasons, totals) keep their meaning.
func TestRetentionPreviewGFSExplainsEachSnapshot(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job := uuidN(3, 1)
	bh.insertJob(t, job, fsSpec)
	if _, err := bh.DB.Writer().Exec(context.Background(), `UPDATE jobs SET schedule_timezone = 'Asia/Tokyo' WHERE id = ?`, job); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	// 16:30 and 15:30 UTC on 4 December are both the 5th in Tokyo (+09:00); 10:00 UTC is the 4th.
	ends := map[string]time.Time{
		uuidN(4, 1): time.Date(2026, 12, 4, 16, 30, 0, 0, time.UTC),
		uuidN(4, 2): time.Date(2026, 12, 4, 15, 30, 0, 0, time.UTC),
		uuidN(4, 3): time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC),
	}
	for id, at := range ends {
		bh.seedSnapshot(t, job, id, base, at.Unix(), false)
	}
	st, pv := bh.c.Post(t, "/api/jobs/"+job+"/retention/preview", map[string]any{"retention": map[string]any{"enabled": true, "keep_daily": 1}})
	if st != http.StatusOK {
		t.Fatalf("preview: %d %v", st, pv)
	}
	if pv["keep_total"].(float64) != 1 || pv["delete_total"].(float64) != 2 || pv["retention"].(map[string]any)["keep_daily"].(float64) != 1 {
		t.Fatalf("preview: %v", pv)
	}
	kept := pv["keep"].([]any)[0].(map[string]any)
	det := kept["details"].([]any)[0].(map[string]any)
	if kept["run_id"] != uuidN(4, 1) || fmt.Sprint(kept["reasons"]) != "[keep_daily]" || det["text"] != "daily 2026-12-05" ||
		det["period"] != "2026-12-05" || det["kept"] != true || det["rule"] != "keep_daily" {
		t.Fatalf("kept %v", kept)
	}
	texts := map[string]string{}
	for _, d := range pv["delete"].([]any) {
		d := d.(map[string]any)
		if fmt.Sprint(d["reasons"]) != "[delete]" {
			t.Fatalf("delete reasons %v", d)
		}
		texts[d["run_id"].(string)] = d["details"].([]any)[0].(map[string]any)["text"].(string)
	}
	if want := "daily 2026-12-05 keeps the newer " + uuidN(4, 1); texts[uuidN(4, 2)] != want {
		t.Fatalf("why %s goes: %q, want %q", uuidN(4, 2), texts[uuidN(4, 2)], want)
	}
	if want := "daily 2026-12-04 is older than the 1 daily periods kept"; texts[uuidN(4, 3)] != want {
		t.Fatalf("why %s goes: %q, want %q", uuidN(4, 3), texts[uuidN(4, 3)], want)
	}
	// Saved with the job, and today's retention JSON without GFS keys still reads as before.
	st, _ = bh.c.Put(t, "/api/jobs/"+job+"/retention", map[string]any{"enabled": true, "keep_weekly": 4, "keep_monthly": 6})
	_, pol := bh.c.Get(t, "/api/jobs/"+job+"/retention")
	if st != http.StatusNoContent || pol["keep_weekly"].(float64) != 4 || pol["keep_monthly"].(float64) != 6 {
		t.Fatalf("PUT GFS retention: %d %v", st, pol)
	}
	st, _ = bh.c.Put(t, "/api/jobs/"+job+"/retention", map[string]any{"enabled": true, "keep_last": 2, "keep_days": nil, "max_delete_per_tick": 50, "max_delete_per_day": 200})
	_, pol = bh.c.Get(t, "/api/jobs/"+job+"/retention")
	if _, has := pol["keep_weekly"]; st != http.StatusNoContent || has {
		t.Fatalf("PUT today's retention: %d %v", st, pol)
	}
}
