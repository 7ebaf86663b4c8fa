package backup_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/testtool"
)

// tarStream is the run's payload: its parts concatenated and decompressed.
func (h *harness) tarStream() []byte {
	h.t.Helper()
	raw, err := os.ReadFile(filepath.Join(h.runDir(), targets.ManifestName))
	if err != nil {
		h.t.Fatal(err)
	}
	m, err := format.DecodeManifest(raw)
	if err != nil {
		h.t.Fatal(err)
	}
	var payload []io.Reader
	for _, p := range m.Artifacts {
		b, err := os.ReadFile(filepath.Join(h.runDir(), p.Name))
		if err != nil {
			h.t.Fatal(err)
		}
		payload = append(payload, bytes.NewReader(b))
	}
	zr, err := zstd.NewReader(io.MultiReader(payload...))
	if err != nil {
		h.t.Fatal(err)
	}
	defer zr.Close()
	out, err := io.ReadAll(zr)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// Reading small files ahead on several goroutines must not change the snapshot: the same tar
// stream, byte for byte, and the same index as reading them one after another, across the
// buffer-size boundaries, more entries than the read-ahead queue holds, hard links kept, and a
// file that grows past the read-ahead limit between the walk and its open.
func TestReadAheadArchivesLikeSequentialReads(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	mtime := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sizes := []int{0, 1, 100, 16<<10 - 1, 16 << 10, 16<<10 + 1, 256<<10 - 1, 256 << 10, 256<<10 + 1, 1 << 20}
	for d := range 3 {
		for i := range 150 {
			size := sizes[(d*150+i)%len(sizes)]
			testtool.WriteFile(t, filepath.Join(src, fmt.Sprintf("d%d", d), fmt.Sprintf("f%03d", i)),
				testtool.RandBytes(size, uint64(d*1000+i)), 0o640, mtime)
		}
	}
	if err := os.Symlink("d0/f001", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "d0", "f002"), filepath.Join(src, "d2", "zz-hardlink")); err != nil {
		t.Fatal(err)
	}
	grows := filepath.Join(src, "d1", "grows")
	testtool.WriteFile(t, grows, []byte("small"), 0o600, mtime)
	backup.InjectBeforeOpen(grows, func() {
		testtool.WriteFile(t, grows, testtool.RandBytes(300<<10, 7), 0o600, mtime)
	})

	for _, policy := range []string{jobspec.HardlinkCopy, jobspec.HardlinkKeep} {
		// Not parallel: both subtests back up src, and grows is reset and grown in each run.
		t.Run(policy, func(t *testing.T) {
			var streams [2][]byte
			var indexes [2][]map[string]any
			for i, sequential := range []bool{true, false} {
				// Small when walked, 300 KiB when opened: read-ahead must stream it.
				testtool.WriteFile(t, grows, []byte("small"), 0o600, mtime)
				h := newHarness(t)
				h.sequential = sequential
				if _, err := h.run(context.Background(), fsSpec(t, func(fs *jobspec.FilesystemSource) {
					fs.HardlinkPolicy = policy
				}, src)); err != nil {
					t.Fatal(err)
				}
				streams[i], indexes[i] = h.tarStream(), h.index()
			}
			if !bytes.Equal(streams[0], streams[1]) {
				t.Fatalf("tar streams differ: %d bytes sequential, %d with read-ahead", len(streams[0]), len(streams[1]))
			}
			if left := backup.ReadAheadLeftOver.Load(); left != 0 {
				t.Fatalf("the read-ahead queue still counts %d bytes once drained", left)
			}
			// Files are only listed by the walk: their header comes from the open handle.
			tr := tar.NewReader(bytes.NewReader(streams[1]))
			links := 0
			for {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case hdr.Typeflag == tar.TypeLink:
					links++
					if policy != jobspec.HardlinkKeep || hdr.Name != arch(filepath.Join(src, "d2", "zz-hardlink")) ||
						hdr.Linkname != arch(filepath.Join(src, "d0", "f002")) || hdr.Mode != 0o640 {
						t.Fatalf("hard link entry %+v under %s", hdr, policy)
					}
				case hdr.Typeflag == tar.TypeReg:
					want := int64(0o640)
					if hdr.Name == arch(grows) {
						want = 0o600
					}
					if hdr.Mode != want || !hdr.ModTime.Equal(mtime) || hdr.Uid != os.Getuid() {
						t.Fatalf("%s: mode %o mtime %v uid %d", hdr.Name, hdr.Mode, hdr.ModTime, hdr.Uid)
					}
				}
			}
			if want := map[string]int{jobspec.HardlinkKeep: 1, jobspec.HardlinkCopy: 0}[policy]; links != want {
				t.Fatalf("%d hard link entries under %s", links, policy)
			}
			if !reflect.DeepEqual(indexes[0], indexes[1]) {
				t.Fatal("indexes differ")
			}
			if len(indexes[1]) < 450 {
				t.Fatalf("index has %d entries", len(indexes[1]))
			}
			grown := false
			for _, e := range indexes[1] {
				if e["path"] == arch(grows) {
					grown = e["size"] == float64(300<<10)
				}
			}
			if !grown {
				t.Fatal("the file that grew after the walk is not in the index at its new size")
			}
		})
	}
}
