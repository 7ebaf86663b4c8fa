package localdir_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
)

// BenchmarkPutPart copies one 64 MiB part file into the target, as the rolling uploader does.
// impl=reader hides the *os.File behind a plain reader, so the copy goes through a user-space
// buffer; impl=file passes the file itself, which Put's chunked io.CopyN hands to
// copy_file_range. Both include the fsync.
func BenchmarkPutPart(b *testing.B) {
	const size = 64 << 20
	src := filepath.Join(b.TempDir(), "part")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, targettest.NewContent(1, size)); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	for _, impl := range []string{"reader", "file"} {
		b.Run("impl="+impl, func(b *testing.B) {
			tg, err := localdir.New(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			in, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			defer in.Close()
			var body io.ReadSeeker = in
			if impl == "reader" {
				body = struct{ io.ReadSeeker }{in}
			}
			run := targettest.NewRun(b)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				// Removed each time: an existing same-size file would be skipped.
				if _, err := tg.Put(context.Background(), run, "payload.part000001", body, size); err != nil {
					b.Fatal(err)
				}
				if err := os.Remove(filepath.Join(tg.Location(run), "payload.part000001")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
