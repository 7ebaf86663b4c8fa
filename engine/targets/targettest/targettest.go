// Package targettest is the conformance suite every targets.Target implementation must pass.
// It goes through the interface only, so the same assertions hold for a local directory and for
// a real WebDAV server.
package targettest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
)

// Run runs the suite. newTarget is called once per subtest; the targets it returns may share
// their storage (one server for the whole suite), because every subtest works in runs with
// fresh random ids.
func Run(t *testing.T, newTarget func(t *testing.T) targets.Target) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, tg targets.Target)
	}{
		{"RoundTrip", testRoundTrip},
		{"ResumeBySize", testResumeBySize},
		{"MetadataAlwaysRewritten", testMetadataAlwaysRewritten},
		{"Missing", testMissing},
		{"UnicodeAndReservedCharacters", testUnicodeNames},
		{"InvalidPaths", testInvalidPaths},
		{"ShortBody", testShortBody},
		{"CleanupNotFound", testCleanupNotFound},
		{"CleanupComplete", testCleanupComplete},
		{"CleanupIncomplete", testCleanupIncomplete},
		{"DeleteRun", testDeleteRun},
		{"CanceledBeforeStart", testCanceledBeforeStart},
		{"CanceledMidPut", testCanceledMidPut},
		{"ConcurrentPuts", testConcurrentPuts},
		{"Describe", testDescribe},
		{"DataTree", testDataTree},
		{"DataTreeInvalid", testDataTreeInvalid},
		{"DataTreeCleanup", testDataTreeCleanup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newTarget(t))
		})
	}
}

// NewRun returns a run with fresh UUIDv4 job and run ids.
func NewRun(t testing.TB) targets.RunRef {
	t.Helper()
	return targets.RunRef{JobID: uuid.NewString(), RunID: uuid.NewString()}
}

// Content is a deterministic pseudo-random byte stream of a given size, seekable and generated
// on the fly so that several MiB can be streamed without holding them.
type Content struct {
	seed, size, off int64
}

// NewContent returns size bytes derived from seed.
func NewContent(seed, size int64) *Content { return &Content{seed: seed, size: size} }

func (c *Content) Read(p []byte) (int, error) {
	if c.off >= c.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), c.size-c.off))
	for i := range n {
		p[i] = c.byteAt(c.off + int64(i))
	}
	c.off += int64(n)
	return n, nil
}

func (c *Content) byteAt(i int64) byte {
	x := uint64(c.seed)*0x9e3779b97f4a7c15 + uint64(i/8)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return byte(x >> (8 * (i % 8)))
}

func (c *Content) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += c.off
	case io.SeekEnd:
		offset += c.size
	default:
		return 0, errors.New("content: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("content: negative offset")
	}
	c.off = offset
	return offset, nil
}

// Digest is the SHA-256 of the whole content.
func (c *Content) Digest() [32]byte {
	h := sha256.New()
	if _, err := io.Copy(h, &Content{seed: c.seed, size: c.size}); err != nil {
		panic(err) // Content never fails
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Put stores NewContent(seed, size) as run/name and fails the test on error.
func Put(t testing.TB, tg targets.Target, run targets.RunRef, name string, seed, size int64) (skipped bool) {
	t.Helper()
	skipped, err := tg.Put(context.Background(), run, name, NewContent(seed, size), size)
	if err != nil {
		t.Fatalf("put %s (%d bytes): %v", name, size, err)
	}
	return skipped
}

// Expect checks that run/name holds exactly NewContent(seed, size), by Size and by Open.
func Expect(t testing.TB, tg targets.Target, run targets.RunRef, name string, seed, size int64) {
	t.Helper()
	ctx := context.Background()
	got, err := tg.Size(ctx, run, name)
	if err != nil {
		t.Fatalf("size %s: %v", name, err)
	}
	if got != size {
		t.Fatalf("size %s = %d, want %d", name, got, size)
	}
	rc, err := tg.Open(ctx, run, name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if n != size {
		t.Fatalf("read %d bytes of %s, want %d", n, name, size)
	}
	var d [32]byte
	if h.Sum(d[:0]); d != NewContent(seed, size).Digest() {
		t.Fatalf("content of %s differs from what was put (seed %d)", name, seed)
	}
}

// ExpectMissing checks that Size and Open of run/name fail with targets.ErrNotExist.
func ExpectMissing(t testing.TB, tg targets.Target, run targets.RunRef, name string) {
	t.Helper()
	ctx := context.Background()
	if n, err := tg.Size(ctx, run, name); !errors.Is(err, targets.ErrNotExist) {
		t.Fatalf("size of missing %s = %d, %v; want ErrNotExist", name, n, err)
	} else if k := targets.KindOf(err); k != targets.KindNotFound {
		t.Fatalf("size of missing %s: kind %q, want %q", name, k, targets.KindNotFound)
	}
	rc, err := tg.Open(ctx, run, name)
	if err == nil {
		rc.Close()
		t.Fatalf("open of missing %s succeeded", name)
	}
	if !errors.Is(err, targets.ErrNotExist) {
		t.Fatalf("open of missing %s: %v; want ErrNotExist", name, err)
	}
}

func testRoundTrip(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	for i, size := range []int64{0, 1, 5<<20 + 12345} {
		name := fmt.Sprintf("payload.part%06d", i+1)
		if Put(t, tg, run, name, int64(i), size) {
			t.Fatalf("first put of %s reported skipped", name)
		}
		Expect(t, tg, run, name, int64(i), size)
	}
}

func testResumeBySize(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	const name = "payload.part000001"
	Put(t, tg, run, name, 1, 1000)
	// Same size, other bytes: resume is by size only, so the first content stays.
	if !Put(t, tg, run, name, 2, 1000) {
		t.Fatal("put with the size already stored was not skipped")
	}
	Expect(t, tg, run, name, 1, 1000)
	if Put(t, tg, run, name, 3, 1001) {
		t.Fatal("put with a different size was skipped")
	}
	Expect(t, tg, run, name, 3, 1001)
	if Put(t, tg, run, targets.EntriesName, 4, 10) || !Put(t, tg, run, targets.EntriesName, 4, 10) {
		t.Fatal("entries index is resumed by size like parts")
	}
}

func testMetadataAlwaysRewritten(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	for _, name := range []string{targets.ManifestName, targets.CompleteName} {
		Put(t, tg, run, name, 1, 64)
		if Put(t, tg, run, name, 2, 64) {
			t.Fatalf("second put of %s with the same size was skipped", name)
		}
		Expect(t, tg, run, name, 2, 64)
	}
}

func testMissing(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	ExpectMissing(t, tg, run, "payload.part000001") // no run directory at all
	Put(t, tg, run, "payload.part000001", 1, 10)
	ExpectMissing(t, tg, run, "payload.part000002")
	ExpectMissing(t, tg, run, targets.CompleteName)
}

func testUnicodeNames(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	names := []string{
		"données-中文-🎉.bin",
		"with space and %20 and %2F",
		"q?uery#frag&amp+plus=eq;semi",
		"Ünïcödé NFC é", // U+00E9
		"e\u0301 NFD",   // e + combining acute: must not be normalised into the name above
		"'quote\"double'",
	}
	for i, n := range names {
		Put(t, tg, run, n, int64(i), int64(100+i))
	}
	for i, n := range names {
		Expect(t, tg, run, n, int64(i), int64(100+i))
	}
}

func testInvalidPaths(t *testing.T, tg targets.Target) {
	ctx := context.Background()
	good := NewRun(t)
	badNames := []string{"", ".", "..", "../x", "a/b", `a\b`, "x.partial", "nul\x00", "tab\tname", strings.Repeat("n", targets.MaxNameLen+1)}
	for _, n := range badNames {
		_, err := tg.Put(ctx, good, n, bytes.NewReader(nil), 0)
		expectInvalid(t, "put "+fmt.Sprintf("%q", n), err)
		_, err = tg.Size(ctx, good, n)
		expectInvalid(t, "size "+fmt.Sprintf("%q", n), err)
	}
	badRuns := []targets.RunRef{
		{JobID: "..", RunID: good.RunID},
		{JobID: good.JobID, RunID: ".."},
		{JobID: "a/b", RunID: good.RunID},
		{JobID: good.JobID, RunID: ""},
		{JobID: "", RunID: good.RunID},
		{JobID: good.JobID, RunID: "run%2F.."},
		{JobID: good.JobID, RunID: "r.un"},
	}
	for _, r := range badRuns {
		_, err := tg.Put(ctx, r, "payload.part000001", bytes.NewReader([]byte("x")), 1)
		expectInvalid(t, fmt.Sprintf("put into %+v", r), err)
		_, err = tg.CleanupRun(ctx, r)
		expectInvalid(t, fmt.Sprintf("cleanup %+v", r), err)
		_, err = tg.DeleteRun(ctx, r)
		expectInvalid(t, fmt.Sprintf("delete %+v", r), err)
	}
}

func expectInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if !errors.Is(err, targets.ErrInvalidPath) || targets.KindOf(err) != targets.KindConfig {
		t.Fatalf("%s: %v (kind %q); want ErrInvalidPath of kind config", what, err, targets.KindOf(err))
	}
}

func testShortBody(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	const name = "payload.part000001"
	_, err := tg.Put(context.Background(), run, name, NewContent(1, 50<<10), 100<<10)
	if err == nil {
		t.Fatal("put of a body shorter than its size succeeded")
	}
	if k := targets.KindOf(err); k != targets.KindIntegrity {
		t.Fatalf("short body: %v (kind %q), want kind integrity", err, k)
	}
	if n, err := tg.Size(context.Background(), run, name); err == nil && n == 100<<10 {
		t.Fatal("a short body left a file with the declared size, which a resume would skip")
	}
}

func testCleanupNotFound(t *testing.T, tg targets.Target) {
	res, err := tg.CleanupRun(context.Background(), NewRun(t))
	if err != nil || res != targets.CleanupSkipNotFound {
		t.Fatalf("cleanup of a missing run = %q, %v; want %q", res, err, targets.CleanupSkipNotFound)
	}
}

func testCleanupComplete(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	Put(t, tg, run, "payload.part000001", 1, 300)
	Put(t, tg, run, targets.ManifestName, 2, 30)
	Put(t, tg, run, targets.CompleteName, 3, 2)
	res, err := tg.CleanupRun(context.Background(), run)
	if err != nil || res != targets.CleanupSkipComplete {
		t.Fatalf("cleanup of a complete run = %q, %v; want %q", res, err, targets.CleanupSkipComplete)
	}
	Expect(t, tg, run, "payload.part000001", 1, 300)
	Expect(t, tg, run, targets.CompleteName, 3, 2)
}

func testCleanupIncomplete(t *testing.T, tg targets.Target) {
	ctx := context.Background()
	run := NewRun(t)
	sibling := targets.RunRef{JobID: run.JobID, RunID: uuid.NewString()}
	Put(t, tg, run, "payload.part000001", 1, 300)
	Put(t, tg, run, "payload.part000002", 2, 200)
	Put(t, tg, sibling, "payload.part000001", 3, 100)
	res, err := tg.CleanupRun(ctx, run)
	if err != nil || res != targets.CleanupDeleted {
		t.Fatalf("cleanup of an incomplete run = %q, %v; want %q", res, err, targets.CleanupDeleted)
	}
	ExpectMissing(t, tg, run, "payload.part000001")
	ExpectMissing(t, tg, run, "payload.part000002")
	Expect(t, tg, sibling, "payload.part000001", 3, 100)
	res, err = tg.CleanupRun(ctx, run)
	if err != nil || res != targets.CleanupSkipNotFound {
		t.Fatalf("second cleanup = %q, %v; want %q", res, err, targets.CleanupSkipNotFound)
	}
	// The run can be written again afterwards (a requeued run reuses its id).
	Put(t, tg, run, "payload.part000001", 4, 10)
	Expect(t, tg, run, "payload.part000001", 4, 10)
}

func testDeleteRun(t *testing.T, tg targets.Target) {
	ctx := context.Background()
	if res, err := tg.DeleteRun(ctx, NewRun(t)); err != nil || res != targets.DeleteNotFound {
		t.Fatalf("delete of a missing run = %q, %v; want %q", res, err, targets.DeleteNotFound)
	}
	run := NewRun(t)
	sibling := targets.RunRef{JobID: run.JobID, RunID: uuid.NewString()}
	Put(t, tg, run, "payload.part000001", 1, 1<<20)
	Put(t, tg, run, targets.EntriesName, 2, 40)
	Put(t, tg, run, targets.ManifestName, 3, 30)
	Put(t, tg, run, targets.CompleteName, 4, 2)
	Put(t, tg, sibling, targets.CompleteName, 5, 2)
	if res, err := tg.DeleteRun(ctx, run); err != nil || res != targets.DeleteDeleted {
		t.Fatalf("delete of a complete run = %q, %v; want %q", res, err, targets.DeleteDeleted)
	}
	for _, n := range []string{"payload.part000001", targets.EntriesName, targets.ManifestName, targets.CompleteName} {
		ExpectMissing(t, tg, run, n)
	}
	Expect(t, tg, sibling, targets.CompleteName, 5, 2)
	if res, err := tg.DeleteRun(ctx, run); err != nil || res != targets.DeleteNotFound {
		t.Fatalf("second delete = %q, %v; want %q", res, err, targets.DeleteNotFound)
	}
}

func testCanceledBeforeStart(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	Put(t, tg, run, "payload.part000001", 1, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tg.Put(ctx, run, "payload.part000002", NewContent(1, 10), 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("put with a canceled context: %v; want context.Canceled", err)
	}
	if _, err := tg.Size(ctx, run, "payload.part000001"); !errors.Is(err, context.Canceled) {
		t.Fatalf("size with a canceled context: %v; want context.Canceled", err)
	}
	if rc, err := tg.Open(ctx, run, "payload.part000001"); !errors.Is(err, context.Canceled) {
		if err == nil {
			rc.Close()
		}
		t.Fatalf("open with a canceled context: %v; want context.Canceled", err)
	}
	if _, err := tg.CleanupRun(ctx, run); !errors.Is(err, context.Canceled) {
		t.Fatalf("cleanup with a canceled context: %v; want context.Canceled", err)
	}
	ExpectMissing(t, tg, run, "payload.part000002")
	Expect(t, tg, run, "payload.part000001", 1, 10)
}

// cancelingReader cancels its context once after bytes have been read from it.
type cancelingReader struct {
	io.ReadSeeker
	after  int64
	read   int64
	cancel context.CancelFunc
}

func (r *cancelingReader) Read(p []byte) (int, error) {
	n, err := r.ReadSeeker.Read(p)
	r.read += int64(n)
	if r.read >= r.after {
		r.cancel()
	}
	return n, err
}

func testCanceledMidPut(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	const name, size = "payload.part000001", 16 << 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := &cancelingReader{ReadSeeker: NewContent(1, size), after: 1 << 20, cancel: cancel}
	if _, err := tg.Put(ctx, run, name, body, size); !errors.Is(err, context.Canceled) {
		t.Fatalf("put canceled mid-body: %v; want context.Canceled", err)
	}
	// The bytes already handed over may still complete the upload, but whatever is left must
	// never pass for the full file unless it is the full file: a resume would skip it.
	if n, err := tg.Size(context.Background(), run, name); err == nil && n == size {
		Expect(t, tg, run, name, 1, size)
	}
	Put(t, tg, run, name, 1, size)
	Expect(t, tg, run, name, 1, size)
}

func testConcurrentPuts(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			size := int64(64<<10 + i*1000)
			_, errs[i] = tg.Put(context.Background(), run, fmt.Sprintf("payload.part%06d", i+1), NewContent(int64(i), size), size)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent put %d: %v", i+1, err)
		}
	}
	for i := range n {
		Expect(t, tg, run, fmt.Sprintf("payload.part%06d", i+1), int64(i), int64(64<<10+i*1000))
	}
}

func testDescribe(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	typ := tg.Type()
	d, ok := all.Registry.Lookup(typ)
	if !ok {
		t.Fatalf("Type() = %q, which engine/targets/all does not list", typ)
	}
	r := tg.Redacted()
	if r.Type != typ {
		t.Fatalf("Redacted().Type = %q, want %q", r.Type, typ)
	}
	// The stored description must open again with its driver, unchanged.
	cfg, err := d.Parse(r.JSON())
	if err != nil {
		t.Fatalf("driver cannot parse Redacted() %s: %v", r.JSON(), err)
	}
	if got := string(cfg.Redact().JSON()); got != string(r.JSON()) {
		t.Fatalf("Redact after Parse = %s, want %s", got, r.JSON())
	}

	loc := tg.Location(run)
	if !strings.Contains(loc, run.JobID) || !strings.Contains(loc, run.RunID) {
		t.Fatalf("Location = %q, want it to name job and run", loc)
	}
}

// dataNames are raw_tree_v1 bodies: nested, sharing parents, with names that are reserved at the
// top level of a run (".partial") or need escaping.
var dataNames = []string{
	"data/home/u/a.txt", "data/home/u/deep/er/b.bin", "data/home/u/download.partial",
	"data/home/u/sp ace/ü #?%;=.txt", "data/top", "data/payload.part000001",
}

func testDataTree(t *testing.T, tg targets.Target) {
	run := NewRun(t)
	for i, n := range dataNames {
		if Put(t, tg, run, n, int64(i), int64(10+i*100)) {
			t.Fatalf("first put of %s reported skipped", n)
		}
	}
	for i, n := range dataNames {
		Expect(t, tg, run, n, int64(i), int64(10+i*100))
	}
	// Resume by size holds below data/ as for parts.
	if !Put(t, tg, run, dataNames[0], 99, 10) {
		t.Fatalf("same-size put of %s was not skipped", dataNames[0])
	}
	ExpectMissing(t, tg, run, "data/home/u/missing")
	ExpectMissing(t, tg, run, "data/nowhere/x")
}

func testDataTreeInvalid(t *testing.T, tg targets.Target) {
	ctx := context.Background()
	run := NewRun(t)
	bad := []string{"data/", "data//x", "data/../x", "data/a/../../x", "data/./x", "data/a/", `data/a\b`,
		"data/nul\x00", "datax/y", "other/x", "/data/x", "data/" + strings.Repeat("n", targets.MaxDataSegmentLen+1),
		"data/" + strings.Repeat("a/", targets.MaxDataPathLen/2)}
	for _, n := range bad {
		_, err := tg.Put(ctx, run, n, bytes.NewReader([]byte("x")), 1)
		expectInvalid(t, fmt.Sprintf("put %q", n), err)
		_, err = tg.Size(ctx, run, n)
		expectInvalid(t, fmt.Sprintf("size %q", n), err)
		rc, err := tg.Open(ctx, run, n)
		if err == nil {
			rc.Close()
		}
		expectInvalid(t, fmt.Sprintf("open %q", n), err)
	}
}

// testDataTreeCleanup is a raw_tree_v1 run killed while uploading data/: cleanup must remove the
// nested files too, and leave a complete one alone.
func testDataTreeCleanup(t *testing.T, tg targets.Target) {
	ctx := context.Background()
	run := NewRun(t)
	Put(t, tg, run, targets.EntriesName, 1, 50)
	Put(t, tg, run, targets.ManifestName, 2, 40)
	for i, n := range dataNames[:3] {
		Put(t, tg, run, n, int64(i), 64)
	}
	res, err := tg.CleanupRun(ctx, run)
	if err != nil || res != targets.CleanupDeleted {
		t.Fatalf("cleanup of a half-written raw tree = %q, %v; want %q", res, err, targets.CleanupDeleted)
	}
	for _, n := range append([]string{targets.EntriesName}, dataNames[:3]...) {
		ExpectMissing(t, tg, run, n)
	}
	// Written again after cleanup, the collections below data/ are made again.
	Put(t, tg, run, dataNames[1], 7, 20)
	Expect(t, tg, run, dataNames[1], 7, 20)

	done := NewRun(t)
	Put(t, tg, done, dataNames[1], 3, 30)
	Put(t, tg, done, targets.CompleteName, 4, 2)
	if res, err := tg.CleanupRun(ctx, done); err != nil || res != targets.CleanupSkipComplete {
		t.Fatalf("cleanup of a complete raw tree = %q, %v", res, err)
	}
	Expect(t, tg, done, dataNames[1], 3, 30)
}
