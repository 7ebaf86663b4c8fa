package audit

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// syncBuffer is a log sink safe for the recorder's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func entry(i int) storage.AuditEntry {
	return storage.AuditEntry{At: int64(i), ActorKind: storage.ActorAnonymous, ClientIP: "127.0.0.1",
		Action: "POST /api/jobs", RequestID: "r", Status: 200, Outcome: storage.AuditOK}
}

func count(t *testing.T, db *storage.DB) int {
	t.Helper()
	var n int
	if err := db.Reader().QueryRow(context.Background(), "SELECT COUNT(*) FROM audit_log").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// While the database writer is held by someone else, Record returns at once every time; beyond
// MaxPending waiting entries it drops (and says so), and once the writer is free every entry it
// kept is written.
func TestRecordNeverWaitsAndBoundsTheQueue(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	var logs syncBuffer
	rc := NewRecorder(db, zerolog.New(&logs))
	held, release := make(chan struct{}), make(chan struct{})
	writerDone := make(chan error)
	go func() {
		writerDone <- db.Write(context.Background(), func(storage.Q) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	const n = MaxPending + batchSize + 100
	for i := range n {
		rc.Record(entry(i)) // a Record that waited for the writer would hang here
	}
	close(release)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	if err := rc.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The drain may have taken one batch off the queue before the writer blocked it.
	if got := count(t, db); got < MaxPending || got > MaxPending+batchSize {
		t.Fatalf("%d rows written, want between %d and %d", got, MaxPending, MaxPending+batchSize)
	}
	if !strings.Contains(logs.String(), "audit entries dropped") {
		t.Fatalf("no warning about dropped entries in %q", logs.String())
	}
	// After the flood the queue takes entries again.
	before := count(t, db)
	rc.Record(entry(1))
	if err := rc.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := count(t, db); got != before+1 {
		t.Fatalf("%d rows after one more entry, want %d", got, before+1)
	}
}

// A write that fails is logged as a warning and the recorder goes on; nothing panics.
func TestFailedWriteIsLogged(t *testing.T) {
	t.Parallel()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "a.db"), storage.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	var logs syncBuffer
	rc := NewRecorder(db, zerolog.New(&logs))
	rc.Record(entry(1))
	if err := rc.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "audit entries lost") {
		t.Fatalf("no warning about the failed write in %q", logs.String())
	}
}
