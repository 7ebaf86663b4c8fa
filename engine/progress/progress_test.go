package progress

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
)

type recorder struct{ got []Snapshot }

func (r *recorder) sink(s Snapshot) { r.got = append(r.got, s) }

func TestReporterThrottlesAndFlushes(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	rec := &recorder{}
	r := NewReporter(KindBackup, clk, rec.sink)

	r.Stage("packaging", &Totals{Files: 2, Bytes: 1000})
	if len(rec.got) != 1 || rec.got[0].Stage != "packaging" || rec.got[0].RateBPS != nil {
		t.Fatalf("stage start not forwarded at once without rate: %+v", rec.got)
	}
	r.Set(Units{Files: 1, Bytes: 100})
	r.Set(Units{Files: 1, Bytes: 200})
	if len(rec.got) != 1 {
		t.Fatalf("forwarded within the same second: %d", len(rec.got))
	}
	clk.Advance(time.Second)
	r.Set(Units{Files: 1, Bytes: 600})
	if len(rec.got) != 2 {
		t.Fatalf("not forwarded after a second: %d", len(rec.got))
	}
	s := rec.got[1]
	if s.RateBPS == nil || *s.RateBPS != 600 || s.ETASeconds == nil || *s.ETASeconds != 1 || s.TS != 1_700_000_001 {
		t.Fatalf("rate/eta/ts: %+v rate=%v eta=%v", s, deref(s.RateBPS), deref(s.ETASeconds))
	}
	clk.Advance(100 * time.Millisecond)
	r.Set(Units{Files: 2, Bytes: 1000}) // reaches total: forwarded at once
	if len(rec.got) != 3 || rec.got[2].Done.Bytes != 1000 {
		t.Fatalf("completion not forwarded at once: %+v", rec.got)
	}
	r.Set(Units{Files: 2, Bytes: 1000})
	if len(rec.got) != 3 {
		t.Fatal("completion forwarded twice")
	}

	clk.Advance(50 * time.Millisecond)
	r.Stage("upload", &Totals{Bytes: 5000})
	if len(rec.got) != 4 || rec.got[3].Stage != "upload" || rec.got[3].RateBPS != nil || rec.got[3].Done != (Units{}) {
		t.Fatalf("stage change: %+v", rec.got[3])
	}
	clk.Advance(2 * time.Second)
	r.Set(Units{Bytes: 1000})
	if got := rec.got[len(rec.got)-1]; got.RateBPS == nil || *got.RateBPS != 500 || *got.ETASeconds != 8 {
		t.Fatalf("rate not reset per stage: rate=%v eta=%v", deref(got.RateBPS), deref(got.ETASeconds))
	}
	n := len(rec.got)
	r.Set(Units{Bytes: 1500})
	r.SetDetail(map[string]any{"backup": map[string]any{"transfer_done_bytes": 1500}})
	if len(rec.got) != n {
		t.Fatal("forwarded within the second")
	}
	r.Close()
	if len(rec.got) != n+1 || rec.got[n].Done.Bytes != 1500 || rec.got[n].Detail == nil {
		t.Fatalf("last value not flushed on close: %+v", rec.got)
	}
	r.Close()
	r.Set(Units{Bytes: 9})
	if len(rec.got) != n+1 {
		t.Fatal("forwarded after close")
	}
}

func TestCloseWithoutChangesForwardsNothing(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Unix(0, 0))
	rec := &recorder{}
	r := NewReporter(KindRestore, clk, rec.sink)
	r.Stage("restore", nil)
	r.Close()
	if len(rec.got) != 1 {
		t.Fatalf("got %d snapshots", len(rec.got))
	}
	var nilR *Reporter
	nilR.Stage("x", nil)
	nilR.Set(Units{})
	nilR.Close()
}

func TestSnapshotJSON(t *testing.T) {
	t.Parallel()
	rate, eta := uint64(10), uint64(3)
	b, err := json.Marshal(Snapshot{V: 1, Kind: KindVerify, Stage: "verify", TS: 5, Done: Units{1, 2, 3},
		Total: &Totals{4, 5, 6}, RateBPS: &rate, ETASeconds: &eta, Detail: map[string]int{"x": 1}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"kind":"verify","stage":"verify","ts":5,"done":{"files":1,"dirs":2,"bytes":3},"total":{"files":4,"dirs":5,"bytes":6},"rate_bps":10,"eta_seconds":3,"detail":{"x":1}}`
	if string(b) != want {
		t.Fatalf("json\n got %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(Snapshot{V: 1, Kind: KindBackup, Stage: "scan"})
	if string(b) != `{"v":1,"kind":"backup","stage":"scan","ts":0,"done":{"files":0,"dirs":0,"bytes":0}}` {
		t.Fatalf("optional fields not omitted: %s", b)
	}
}

func deref(p *uint64) any {
	if p == nil {
		return nil
	}
	return *p
}
