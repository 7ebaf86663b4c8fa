package restore_test

import (
	"archive/tar"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"github.com/bastion-backup/bastion/engine/testtool"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
)

func TestListAndVerify(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	testtool.BuildTree(t, src, 1<<16)
	testtool.WriteFile(t, filepath.Join(src, ".hidden"), []byte("h"), 0o644, timeZero)
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
	testtool.Corrupt(t, filepath.Join(dir, format.PartName(1)))
	_, err = restore.Verify(context.Background(), restore.VerifyRequest{JobID: jobID, RunID: b.runID, Target: tg,
		ScratchDir: filepath.Join(t.TempDir(), "v")})
	var pe *restore.PartError
	if !errors.As(err, &pe) || pe.Part != format.PartName(1) {
		t.Fatalf("verify of a corrupted snapshot: %v", err)
	}
}

// A crafted entries index must not make verify hash files outside its scratch directory: not
// through "..", not through an absolute path, not through a symlink the archive restored.
func TestVerifyRefusesIndexPathsOutsideScratch(t *testing.T) {
	t.Parallel()
	outside := filepath.Join(t.TempDir(), "outside")
	secret := []byte("outside the scratch directory")
	testtool.WriteFile(t, filepath.Join(outside, "secret.txt"), secret, 0o644, timeZero)
	sum := blake3.Sum256(secret)
	secretHash := hex.EncodeToString(sum[:])
	ok := "fine"
	okSum := blake3.Sum256([]byte(ok))

	payload := makeTar(t, tar.FormatPAX, []tarEntry{
		{hdr: tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "a/ok.txt"}, body: ok},
		{hdr: tar.Header{Name: "esc", Typeflag: tar.TypeSymlink, Linkname: outside}},
		{hdr: tar.Header{Name: "lf", Typeflag: tar.TypeSymlink, Linkname: filepath.Join(outside, "secret.txt")}},
	})
	scratch := filepath.Join(t.TempDir(), "v")
	// Verify restores into scratch/restore: climb out of it to the secret.
	up, err := filepath.Rel(filepath.Join(scratch, "restore"), filepath.Join(outside, "secret.txt"))
	if err != nil || !strings.HasPrefix(up, "..") {
		t.Fatalf("rel %q %v", up, err)
	}
	escapes := []string{filepath.ToSlash(up), "a/../" + filepath.ToSlash(up), filepath.Join(outside, "secret.txt"),
		"esc/secret.txt", "lf"}
	entries := []format.Entry{
		{Path: "a", Kind: format.KindDir},
		format.FileEntry("a/ok.txt", int64(len(ok)), hex.EncodeToString(okSum[:])),
		{Path: "esc", Kind: format.KindSymlink},
		{Path: "lf", Kind: format.KindSymlink},
	}
	for _, p := range escapes {
		entries = append(entries, format.FileEntry(p, int64(len(secret)), secretHash))
	}
	tg, runID := publishIndexed(t, [][]byte{zst(t, payload)}, format.EncryptionNone, "", entries)

	vr, err := restore.Verify(context.Background(), restore.VerifyRequest{JobID: jobID, RunID: runID, Target: tg, ScratchDir: scratch})
	if err != nil {
		t.Fatal(err)
	}
	if vr.OK || vr.FilesTotal != int64(1+len(escapes)) || vr.FilesOK != 1 || vr.FilesFailed != int64(len(escapes)) {
		t.Fatalf("verify %+v", vr)
	}
	for _, p := range escapes {
		if !slices.ContainsFunc(vr.Errors, func(e string) bool { return strings.HasPrefix(e, p+": ") }) {
			t.Fatalf("no error for %s: %q", p, vr.Errors)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(outside, "secret.txt")); string(got) != string(secret) {
		t.Fatal("outside file changed")
	}

	// The same for the database verify integrity-checks: a healthy database outside scratch,
	// named through ".." or through the restored symlink "dblink", is refused.
	dbPath := filepath.Join(outside, "db.sqlite3")
	db, err := sql.Open("sqlite3", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	upDB, _ := filepath.Rel(filepath.Join(scratch, "restore"), dbPath)
	payload = makeTar(t, tar.FormatPAX, []tarEntry{{hdr: tar.Header{Name: "dblink", Typeflag: tar.TypeSymlink, Linkname: dbPath}}})
	tg, runID = publishIndexed(t, [][]byte{zst(t, payload)}, format.EncryptionNone, "", []format.Entry{{Path: "dblink", Kind: format.KindSymlink}})
	for _, name := range []string{filepath.ToSlash(upDB), "dblink"} {
		vr, err := restore.Verify(context.Background(), restore.VerifyRequest{JobID: jobID, RunID: runID, Target: tg,
			ScratchDir: scratch, SQLiteSnapshot: name})
		if err != nil || vr.OK || vr.SQLiteOK == nil || *vr.SQLiteOK {
			t.Fatalf("verify of database %s: %+v %v", name, vr, err)
		}
	}
}

// A restore test of a sample restores sample_files random files plus the largest one, and catches
// a file whose bytes differ from what the entries index says (the index was crafted to disagree).
func TestVerifySampleCatchesContentMismatch(t *testing.T) {
	t.Parallel()
	ents := []tarEntry{{hdr: tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755}}}
	index := []format.Entry{{Path: "a", Kind: format.KindDir}}
	for i := range 6 {
		body := strings.Repeat(string(rune('a'+i)), i+1)
		name := "a/f" + string(rune('0'+i))
		ents = append(ents, tarEntry{hdr: tar.Header{Name: name}, body: body})
		sum := blake3.Sum256([]byte(body))
		index = append(index, format.FileEntry(name, int64(len(body)), hex.EncodeToString(sum[:])))
	}
	big := strings.Repeat("B", 4096)
	ents = append(ents, tarEntry{hdr: tar.Header{Name: "a/big"}, body: big})
	wrong := blake3.Sum256([]byte(strings.Repeat("C", 4096))) // same size, other bytes
	index = append(index, format.FileEntry("a/big", int64(len(big)), hex.EncodeToString(wrong[:])))
	tg, runID := publishIndexed(t, [][]byte{zst(t, makeTar(t, tar.FormatPAX, ents))}, format.EncryptionNone, "", index)

	scratch := filepath.Join(t.TempDir(), "v")
	vr, err := restore.Verify(context.Background(), restore.VerifyRequest{JobID: jobID, RunID: runID, Target: tg,
		ScratchDir: scratch, SampleFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	if vr.OK || vr.FilesTotal != 3 || vr.FilesOK != 2 || vr.FilesFailed != 1 ||
		len(vr.Errors) != 1 || vr.Errors[0] != "a/big: hash mismatch" {
		t.Fatalf("sampled verify %+v", vr)
	}
	if _, err := os.Stat(scratch); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("scratch left behind: %v", err)
	}
	// Without sampling every file is checked.
	vr, err = restore.Verify(context.Background(), restore.VerifyRequest{JobID: jobID, RunID: runID, Target: tg, ScratchDir: scratch})
	if err != nil || vr.OK || vr.FilesTotal != 7 || vr.FilesFailed != 1 {
		t.Fatalf("full verify %+v %v", vr, err)
	}
}
