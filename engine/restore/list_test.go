package restore_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
)

func TestListAndVerify(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	buildTree(t, src, 1<<16)
	writeFile(t, filepath.Join(src, ".hidden"), []byte("h"), 0o644, timeZero)
	tg := newLocalTarget(t)
	b := runBackup(t, tg, fsSpec(t, nil, src), nil)
	run := targets.RunRef{JobID: jobID, RunID: b.runID}
	idx := filepath.Join(t.TempDir(), "cache", "entries.jsonl.zst")
	if err := restore.FetchIndex(context.Background(), tg, run, idx); err == nil {
		t.Fatal("FetchIndex into a missing directory succeeded")
	}
	idx = filepath.Join(t.TempDir(), "entries.jsonl.zst")
	if err := restore.FetchIndex(context.Background(), tg, run, idx); err != nil {
		t.Fatal(err)
	}
	// The root lists the implied parent directory of the selected path.
	root, err := restore.List(idx, restore.ListOptions{})
	if err != nil || len(root.Entries) != 1 || root.Entries[0].Kind != format.KindDir || root.Entries[0].Name != strings.Split(arch(src), "/")[0] {
		t.Fatalf("root %+v %v", root, err)
	}
	prefix := arch(src)
	all, err := restore.List(idx, restore.ListOptions{Prefix: "/" + prefix + "/", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if all.Total != len(all.Entries) || all.Entries[0].Kind != format.KindDir {
		t.Fatalf("dirs first: %+v", all.Entries[:3])
	}
	// Paging covers everything once.
	seen := map[string]bool{}
	cursor := ""
	for {
		p, err := restore.List(idx, restore.ListOptions{Prefix: prefix, Limit: 4, Cursor: cursor, FilesFirst: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Entries {
			if seen[c.Path] {
				t.Fatalf("%s listed twice", c.Path)
			}
			seen[c.Path] = true
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if len(seen) != all.Total {
		t.Fatalf("paged %d of %d", len(seen), all.Total)
	}
	first, _ := restore.List(idx, restore.ListOptions{Prefix: prefix, FilesFirst: true, Limit: 1})
	if first.Entries[0].Kind == format.KindDir {
		t.Fatalf("files first: %+v", first.Entries)
	}
	hidden, _ := restore.List(idx, restore.ListOptions{Prefix: prefix, HideDotfiles: true, Limit: 1000})
	if hidden.Total != all.Total-1 {
		t.Fatalf("hide dotfiles: %d of %d", hidden.Total, all.Total)
	}
	q, _ := restore.List(idx, restore.ListOptions{Prefix: prefix, Q: "LINK", Kind: format.KindSymlink})
	if q.Total != 4 {
		t.Fatalf("q+kind: %+v", q.Entries)
	}
	if _, err := restore.List(idx, restore.ListOptions{Cursor: "x"}); err == nil {
		t.Fatal("bad cursor accepted")
	}

	vr, err := restore.Verify(context.Background(), restore.VerifyRequest{JobID: jobID, RunID: b.runID, Target: tg,
		ScratchDir: filepath.Join(t.TempDir(), "v")})
	if err != nil || !vr.OK || vr.FilesFailed != 0 || vr.FilesOK != vr.FilesTotal || vr.SQLiteOK != nil {
		t.Fatalf("verify %+v %v", vr, err)
	}
	// A corrupted part fails verify, naming the part.
	dir, _ := tg.RunDir(run)
	corrupt(t, filepath.Join(dir, format.PartName(1)))
	_, err = restore.Verify(context.Background(), restore.VerifyRequest{JobID: jobID, RunID: b.runID, Target: tg,
		ScratchDir: filepath.Join(t.TempDir(), "v")})
	var pe *restore.PartError
	if !errors.As(err, &pe) || pe.Part != format.PartName(1) {
		t.Fatalf("verify of a corrupted snapshot: %v", err)
	}
}
