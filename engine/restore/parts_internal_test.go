package restore

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
)

// onlyTarget hides a local target's RunDir, so that its parts take the staged path.
type onlyTarget struct{ targets.Target }

func localPart(t *testing.T, data []byte) (*localdir.Target, targets.RunRef, format.Part, string) {
	t.Helper()
	tg, err := localdir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	run := targets.RunRef{JobID: "job", RunID: "run"}
	if _, err := tg.Put(context.Background(), run, "payload.part000001", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	sum := blake3.Sum256(data)
	dir, _ := tg.RunDir(run)
	return tg, run, format.Part{Name: "payload.part000001", Size: int64(len(data)), HashAlg: format.HashAlgBLAKE3,
		Hash: hex.EncodeToString(sum[:])}, filepath.Join(dir, "payload.part000001")
}

func TestPartStreamInPlace(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB

	t.Run("ReadsTheTargetFileWithoutStaging", func(t *testing.T) {
		t.Parallel()
		tg, run, part, path := localPart(t, data)
		staging := t.TempDir()
		ps := newPartStream(context.Background(), tg, run, []format.Part{part}, staging, nil)
		got, err := io.ReadAll(ps)
		ps.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, err %v", len(got), err)
		}
		if entries, _ := os.ReadDir(staging); len(entries) != 0 {
			t.Fatalf("staging holds %d files; parts of a local target are read in place", len(entries))
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("the target's part is gone after the restore: %v", err)
		}
	})

	t.Run("StagedForOtherTargets", func(t *testing.T) {
		t.Parallel()
		tg, run, part, path := localPart(t, data)
		ps := newPartStream(context.Background(), onlyTarget{tg}, run, []format.Part{part}, t.TempDir(), nil)
		got, err := io.ReadAll(ps)
		ps.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, err %v", len(got), err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("the target's part is gone: %v", err)
		}
	})

	t.Run("WrittenWhileDecoding", func(t *testing.T) {
		t.Parallel()
		tg, run, part, path := localPart(t, data)
		ps := newPartStream(context.Background(), tg, run, []format.Part{part}, t.TempDir(), nil)
		defer ps.Close()
		buf := make([]byte, 4096)
		if _, err := io.ReadFull(ps, buf); err != nil {
			t.Fatal(err)
		}
		// Someone rewrites the verified part while it is being decoded.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("X"), int64(len(data)-1))
		f.Close()
		_, err = io.Copy(io.Discard, ps)
		var pe *PartError
		if !errors.As(err, &pe) || pe.Reason != "changed_during_restore" || pe.Part != part.Name {
			t.Fatalf("error = %v, want changed_during_restore naming the part", err)
		}
	})

	t.Run("DamagedBeforeDecoding", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name, reason string
			damage       func(path string)
		}{
			{"Flipped", "hash_mismatch", func(p string) {
				f, _ := os.OpenFile(p, os.O_WRONLY, 0)
				f.WriteAt([]byte("Z"), 100)
				f.Close()
			}},
			{"Truncated", "size_mismatch", func(p string) { os.Truncate(p, 1000) }},
			{"Missing", "missing", func(p string) { os.Remove(p) }},
			{"Symlink", "read_error", func(p string) { os.Remove(p); os.Symlink("/etc/hostname", p) }},
		} {
			tg, run, part, path := localPart(t, data)
			tc.damage(path)
			var decoded int
			ps := newPartStream(context.Background(), tg, run, []format.Part{part}, t.TempDir(), func(n int64) { decoded += int(n) })
			_, err := io.Copy(io.Discard, ps)
			ps.Close()
			var pe *PartError
			if !errors.As(err, &pe) || pe.Reason != tc.reason {
				t.Errorf("%s: error %v, want %s", tc.name, err, tc.reason)
			}
			if decoded != 0 {
				t.Errorf("%s: %d bytes of an unverified part reached the decoder", tc.name, decoded)
			}
		}
	})
}
