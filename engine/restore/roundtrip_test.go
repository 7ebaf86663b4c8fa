package restore_test

import (
	"context"
	"errors"
	"github.com/bastion-backup/bastion/engine/testtool"
	"os"
	"path/filepath"
	"testing"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		encrypt   bool
		hardlinks bool
	}{
		{"Plain", false, false},
		{"AgeEncrypted", true, false},
		{"HardlinkKeep", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := filepath.Join(t.TempDir(), "src")
			testtool.BuildTree(t, src, 3<<20)
			tg := newLocalTarget(t)
			keys := &testtool.AgeKeys{}
			spec := fsSpec(t, func(s *jobspec.Spec) {
				if tc.encrypt {
					s.Pipeline.Encryption = jobspec.Encryption{Type: jobspec.EncryptionAgeX25519, KeyName: "default"}
				}
				if tc.hardlinks {
					s.Filesystem.HardlinkPolicy = jobspec.HardlinkKeep
				}
			}, src)
			b := runBackup(t, tg, spec, keys)
			if b.summary.Parts < 3 {
				t.Fatalf("expected several 1 MiB parts, got %d", b.summary.Parts)
			}
			run := targets.RunRef{JobID: jobID, RunID: b.runID}
			m, err := restore.ReadManifest(context.Background(), tg, run)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Artifacts) != b.summary.Parts || m.EntryIndex.Count != b.summary.EntriesCount {
				t.Fatalf("manifest %+v vs summary %+v", m, b.summary)
			}
			wantEnc := format.EncryptionNone
			if tc.encrypt {
				wantEnc = format.EncryptionAge
			}
			if m.Pipeline.Encryption != wantEnc || (tc.encrypt && m.Pipeline.EncryptionKey != "default") {
				t.Fatalf("manifest pipeline %+v", m.Pipeline)
			}
			dest := filepath.Join(t.TempDir(), "dest")
			res, err := restore.Restore(context.Background(), restore.Request{
				JobID: jobID, RunID: b.runID, Target: tg, Destination: dest,
				StagingDir: filepath.Join(t.TempDir(), "rs"), Keys: keys, Logger: testLogger(t),
			})
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if res.EntriesSeen != m.EntryIndex.Count || res.Refused != 0 {
				t.Fatalf("restore result %+v, index count %d", res, m.EntryIndex.Count)
			}
			testtool.CompareTrees(t, src, testtool.ArchivePath(dest, src), tc.hardlinks)
		})
	}
}

func TestRestoreRefusesIncompleteRun(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	testtool.BuildTree(t, src, 1<<16)
	tg := newLocalTarget(t)
	b := runBackup(t, tg, fsSpec(t, nil, src), nil)
	dir, err := tg.RunDir(targets.RunRef{JobID: jobID, RunID: b.runID})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, targets.CompleteName)); err != nil {
		t.Fatal(err)
	}
	_, err = restore.Restore(context.Background(), restore.Request{
		JobID: jobID, RunID: b.runID, Target: tg, Destination: t.TempDir(), StagingDir: filepath.Join(t.TempDir(), "s"),
	})
	var re *restore.Error
	if !errors.As(err, &re) || re.Code != restore.CodeIncomplete {
		t.Fatalf("err = %v, want snapshot_incomplete", err)
	}
}
