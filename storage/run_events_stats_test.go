package storage_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func TestRunEventStatsSummarisesOneRun(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "job1", "run1", "run2")
	err := db.Write(ctx, func(q storage.Q) error {
		return q.AppendRunEvents(ctx, []storage.RunEvent{
			{RunID: "run1", Kind: "upload", Level: "info", Message: "a"},
			{RunID: "run1", Kind: "upload", Level: "warn", Message: "b"},
			{RunID: "run2", Kind: "other", Level: "error", Message: "not this run"},
			{RunID: "run1", Kind: "Complete", Level: "info", Message: "c"},
			{RunID: "run1", Kind: "failed", Level: "error", Message: "d"},
			{RunID: "run1", Kind: "upload", Level: "info", Message: "e"},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := db.Reader().RunEventStats(ctx, "run1")
	if err != nil {
		t.Fatal(err)
	}
	want := storage.EventStats{Total: 5, MaxSeq: 5, ByLevel: map[string]int64{"info": 3, "warn": 1, "error": 1},
		Kinds: []string{"Complete", "failed", "upload"}}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("stats = %+v, want %+v", st, want)
	}
	st, err = db.Reader().RunEventStats(ctx, "none")
	if err != nil || st.Total != 0 || st.MaxSeq != 0 || len(st.ByLevel) != 0 || st.Kinds == nil || len(st.Kinds) != 0 {
		t.Fatalf("stats of a run without events = %+v, %v", st, err)
	}
}
