package restore_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/s3"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// rawDriver is a real target and where a run's data/ files sit on disk behind it, so a test can
// damage them the way a disk or a person would.
type rawDriver struct {
	name string
	open func(t *testing.T) (tg targets.Target, onDisk func(runID, rel string) string)
}

var rawDrivers = []rawDriver{
	{"LocalDir", func(t *testing.T) (targets.Target, func(string, string) string) {
		tg := newLocalTarget(t)
		return tg, func(runID, rel string) string {
			return filepath.Join(tg.BaseDir(), jobID, runID, "data", filepath.FromSlash(rel))
		}
	}},
	{"WebDAVRclone", func(t *testing.T) (targets.Target, func(string, string) string) {
		dir := t.TempDir()
		base, user, pass := testtool.StartRcloneWebDAV(t, dir)
		tg, err := webdav.New(base, secrets.WebDAV{Username: user, Password: pass}, webdav.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return tg, func(runID, rel string) string {
			return filepath.Join(dir, jobID, runID, "data", filepath.FromSlash(rel))
		}
	}},
	{"S3VersityGW", func(t *testing.T) (targets.Target, func(string, string) string) {
		srv := testtool.StartVersityGW(t)
		tg, err := s3.Open(context.Background(), s3.Config{Endpoint: srv.Endpoint, Region: srv.Region, Bucket: srv.Bucket,
			Prefix: "bk", SecretName: "s", PathStyle: true}, s3.Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, s3.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return tg, func(runID, rel string) string {
			return filepath.Join(srv.Dir, srv.Bucket, "bk", jobID, runID, "data", filepath.FromSlash(rel))
		}
	}},
}

func rawSpec(t *testing.T, src string, patch func(*jobspec.Spec)) *jobspec.Spec {
	return fsSpec(t, func(s *jobspec.Spec) {
		s.Pipeline.Format = jobspec.FormatRawTreeV1
		s.Filesystem.HardlinkPolicy = jobspec.HardlinkKeep
		if patch != nil {
			patch(s)
		}
	}, src)
}

func TestRawTreeRoundTrip(t *testing.T) {
	t.Parallel()
	for _, drv := range rawDrivers {
		t.Run(drv.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			tg, onDisk := drv.open(t)
			src := filepath.Join(t.TempDir(), "src")
			testtool.BuildTree(t, src, 1<<20)
			if drv.name == "S3VersityGW" {
				// S3 keys are at most 1024 bytes: BuildTree's 2000-byte path cannot be a
				// data/ object there (docs/backup-format.md says so).
				if err := os.RemoveAll(filepath.Join(src, "000-"+strings.Repeat("d", 180))); err != nil {
					t.Fatal(err)
				}
			}
			testtool.WholeSecondMtimes(t, src)
			b := runBackup(t, tg, rawSpec(t, src, nil), nil)
			if b.summary.ArtifactFormat != format.FormatRawTreeV1 || b.summary.Parts != 0 || b.summary.Planner.PlanMode != "staged_upload" {
				t.Fatalf("summary %+v", b.summary)
			}
			_, local := tg.(interface{ BaseDir() string })
			if got := b.events.Find("direct_data_path_ready") != nil; got != local {
				t.Fatalf("direct_data_path_ready emitted = %v, want %v (events %v)", got, local, b.events.Kinds())
			}
			run := targets.RunRef{JobID: jobID, RunID: b.runID}
			m, err := restore.ReadManifest(ctx, tg, run)
			if err != nil {
				t.Fatal(err)
			}
			p := m.Pipeline
			if p.Format != format.FormatRawTreeV1 || p.Tar != "none" || p.Compression != "none" || p.Encryption != "none" ||
				p.SplitBytes != 0 || len(m.Artifacts) != 0 || m.EntryIndex.Count != b.summary.EntriesCount {
				t.Fatalf("manifest %+v", m)
			}
			arch := strings.TrimPrefix(src, "/")
			if _, err := os.Stat(onDisk(b.runID, arch+"/exec.sh")); err != nil {
				t.Fatalf("data file not where the layout puts it: %v", err)
			}
			if _, err := os.Lstat(onDisk(b.runID, arch+"/link-rel")); err == nil {
				t.Fatal("a symlink was stored under data/; it belongs in the index only")
			}

			dest := filepath.Join(t.TempDir(), "dest")
			res, err := restore.Restore(ctx, restore.Request{JobID: jobID, RunID: b.runID, Target: tg, Destination: dest,
				StagingDir: filepath.Join(t.TempDir(), "rs"), Logger: testLogger(t)})
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if res.EntriesSeen != m.EntryIndex.Count || res.Refused != 0 {
				t.Fatalf("restore result %+v", res)
			}
			testtool.CompareTrees(t, src, testtool.ArchivePath(dest, src), true)

			// A selection restores just what it names.
			sel := filepath.Join(t.TempDir(), "sel")
			_, err = restore.Restore(ctx, restore.Request{JobID: jobID, RunID: b.runID, Target: tg, Destination: sel,
				StagingDir: filepath.Join(t.TempDir(), "rs2"), Logger: testLogger(t),
				Selection: &restore.Selection{Files: []string{arch + "/exec.sh"}, Dirs: []string{"/" + arch + "/small/d01/"}}})
			if err != nil {
				t.Fatalf("selection restore: %v", err)
			}
			got := listTree(t, testtool.ArchivePath(sel, src))
			if len(got) == 0 || got[0] != "exec.sh" || !strings.HasPrefix(got[1], "small") {
				t.Fatalf("selection restored %v", got)
			}
			for _, g := range got {
				if g != "exec.sh" && g != "small" && !strings.HasPrefix(g, "small/d01") {
					t.Fatalf("selection restored %s too (all: %v)", g, got)
				}
			}

			vr, err := restore.Verify(ctx, restore.VerifyRequest{JobID: jobID, RunID: b.runID, Target: tg, ScratchDir: filepath.Join(t.TempDir(), "v")})
			if err != nil || !vr.OK || vr.FilesFailed != 0 || vr.FilesTotal == 0 || vr.FilesOK != vr.FilesTotal {
				t.Fatalf("verify of an intact raw tree = %+v, %v", vr, err)
			}

			// The restore picker and the browse index read entries.jsonl.zst: a raw tree's
			// extra fields change nothing there.
			idx := filepath.Join(t.TempDir(), targets.EntriesName)
			if err := restore.FetchIndex(ctx, tg, run, idx); err != nil {
				t.Fatal(err)
			}
			pg, err := restore.List(idx, restore.ListOptions{Prefix: arch + "/hard"})
			if err != nil || pg.Total != 2 || pg.Entries[0].Name != "a.txt" || pg.Entries[0].Kind != format.KindFile || pg.Entries[0].Size != 14 {
				t.Fatalf("picker page %+v, %v", pg, err)
			}
			db := filepath.Join(t.TempDir(), "browse.sqlite3")
			if err := restore.BuildIndex(ctx, idx, db); err != nil {
				t.Fatal(err)
			}
			ifi, _ := os.Stat(idx)
			ix, err := restore.OpenIndex(ctx, db, ifi.Size())
			if err != nil {
				t.Fatal(err)
			}
			bp, err := ix.List(ctx, restore.ListOptions{Prefix: arch, Kind: format.KindSymlink})
			ix.Close()
			if err != nil || bp.Total != 4 {
				t.Fatalf("browse index symlinks %+v, %v", bp, err)
			}

			// Damage: one file flipped (same size), one deleted. The largest file (sparse.img) is
			// the one flipped, so the sampled restore_test always looks at it.
			testtool.Corrupt(t, onDisk(b.runID, arch+"/sparse.img"))
			if err := os.Remove(onDisk(b.runID, arch+"/exec.sh")); err != nil {
				t.Fatal(err)
			}
			vr, err = restore.Verify(ctx, restore.VerifyRequest{JobID: jobID, RunID: b.runID, Target: tg, ScratchDir: filepath.Join(t.TempDir(), "v2")})
			if err != nil || vr.OK || vr.FilesFailed != 2 || vr.FilesOK != vr.FilesTotal-2 {
				t.Fatalf("verify of a damaged raw tree = %+v, %v", vr, err)
			}
			if !containsAll(vr.Errors, "sparse.img: hash_mismatch", "exec.sh: ") {
				t.Fatalf("verify errors %q", vr.Errors)
			}
			vr, err = restore.Verify(ctx, restore.VerifyRequest{JobID: jobID, RunID: b.runID, Target: tg, SampleFiles: 2,
				ScratchDir: filepath.Join(t.TempDir(), "v3")})
			if err != nil || vr.OK || vr.FilesTotal > 3 || !containsAll(vr.Errors, "sparse.img: hash_mismatch") {
				t.Fatalf("sampled verify of a damaged raw tree = %+v, %v", vr, err)
			}
			// A restore refuses the damaged file and names it.
			_, err = restore.Restore(ctx, restore.Request{JobID: jobID, RunID: b.runID, Target: tg,
				Destination: filepath.Join(t.TempDir(), "d2"), StagingDir: filepath.Join(t.TempDir(), "rs3"), Logger: testLogger(t),
				Selection: &restore.Selection{Files: []string{arch + "/sparse.img"}}})
			var pe *restore.PartError
			if !errors.As(err, &pe) || pe.Reason != "hash_mismatch" || !strings.HasSuffix(pe.Part, "/sparse.img") {
				t.Fatalf("restore of a damaged file: %v, want a hash_mismatch naming data/.../sparse.img", err)
			}
		})
	}
}

func containsAll(list []string, subs ...string) bool {
	for _, s := range subs {
		found := false
		for _, l := range list {
			if strings.Contains(l, s) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// listTree lists root's paths relative to it, sorted (WalkDir order).
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(root, p); rel != "." {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRawTreeSQLite: a SQLite job stored as a raw tree keeps its snapshot as one data/ file, and
// verify downloads that file alone for the integrity check; a damaged one fails both checks.
func TestRawTreeSQLite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "app.db")
	db, err := sql.Open("sqlite3", "file:"+dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TABLE t(x)", "INSERT INTO t VALUES (randomblob(100000))"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	tg := newLocalTarget(t)
	s, err := jobspec.ParseAndValidate([]byte(`{"v":1,"type":"sqlite","pipeline":{"format":"raw_tree_v1"},"source":{"path":"` + dbPath + `"},
		"target":{"type":"local_dir","base_dir":"/bk"}}`))
	if err != nil {
		t.Fatal(err)
	}
	b := runBackup(t, tg, s, nil)
	if b.summary.SQLite == nil || b.summary.SQLite.SnapshotName != "app.db" || b.summary.ArtifactFormat != format.FormatRawTreeV1 {
		t.Fatalf("summary %+v", b.summary)
	}
	verify := func() restore.VerifyResult {
		vr, err := restore.Verify(ctx, restore.VerifyRequest{JobID: jobID, RunID: b.runID, Target: tg,
			ScratchDir: filepath.Join(t.TempDir(), "v"), SQLiteSnapshot: "app.db"})
		if err != nil {
			t.Fatal(err)
		}
		return vr
	}
	if vr := verify(); !vr.OK || vr.SQLiteOK == nil || !*vr.SQLiteOK || vr.FilesTotal != 1 {
		t.Fatalf("verify %+v", vr)
	}
	testtool.Corrupt(t, filepath.Join(tg.BaseDir(), jobID, b.runID, "data", "app.db"))
	if vr := verify(); vr.OK || vr.SQLiteOK == nil || *vr.SQLiteOK || vr.FilesFailed != 1 {
		t.Fatalf("verify of a damaged database %+v", vr)
	}
}
