package storage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func TestOpenSetsPragmas(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	for _, tc := range []struct {
		q    storage.Q
		name string
		want string
	}{
		{db.Writer(), "journal_mode", "wal"},
		{db.Writer(), "synchronous", "1"},
		{db.Writer(), "foreign_keys", "1"},
		{db.Writer(), "busy_timeout", "5000"},
		{db.Reader(), "foreign_keys", "1"},
		{db.Reader(), "query_only", "1"},
	} {
		var got string
		if err := tc.q.QueryRow(ctx, "PRAGMA "+tc.name).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %q, want %q", tc.name, got, tc.want)
		}
	}
	if _, err := db.Reader().Exec(ctx, "INSERT INTO settings(key, value_json, updated_at) VALUES ('x','1',1)"); err == nil {
		t.Fatal("a reader connection accepted a write")
	}
}

func TestMigrationsAreIdempotentAndNewerSchemaIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bastion.db")
	open := func() (*storage.DB, error) {
		return storage.Open(ctx, path, storage.Options{Logger: zerolog.New(zerolog.NewTestWriter(t))})
	}
	db, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Writer().PutSetting(ctx, "k", `{"a":1}`, 1); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = open() // reopening applies nothing and keeps data
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.Reader().GetSetting(ctx, "k"); err != nil || v != `{"a":1}` {
		t.Fatalf("setting after reopen = %q, %v", v, err)
	}
	future := storage.SchemaVersion() + 1
	if _, err := db.Writer().Exec(ctx, "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, 'future', 0)", future); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	_, err = open()
	var tooNew storage.ErrSchemaTooNew
	if !errors.As(err, &tooNew) || tooNew.DB != future {
		t.Fatalf("open of a newer schema: err = %v, want ErrSchemaTooNew{%d}", err, future)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatal("refusing a newer schema modified the database file")
	}
}

func TestCreateFirstUserRace(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := db.Writer().CreateFirstUser(ctx, fmt.Sprintf("admin%d", i), "hash", 1)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d setups won, want exactly 1", wins.Load())
	}
	if n, _ := db.Reader().CountUsers(ctx); n != 1 {
		t.Fatalf("%d users, want 1", n)
	}
}

func TestExpiredSessionIsAbsentAndPruned(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	w := db.Writer()
	if _, err := w.CreateFirstUser(ctx, "admin", "h", 1); err != nil {
		t.Fatal(err)
	}
	u, err := w.GetUserByUsername(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []storage.Session{{ID: "live", ExpiresAt: 200}, {ID: "old", ExpiresAt: 100}} {
		s.UserID, s.CSRFToken, s.CreatedAt = u.ID, "c", 1
		if err := w.InsertSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Reader().GetSession(ctx, "old", 100); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired session: err = %v, want ErrNotFound", err)
	}
	if _, err := db.Reader().GetSession(ctx, "live", 100); err != nil {
		t.Fatalf("live session: %v", err)
	}

	now := int64(1_000_000_000)
	mustExec(t, w, `INSERT INTO enrollment_tokens(token_hash, created_at, expires_at, remaining_uses) VALUES
		(x'01', 1, ?, NULL), (x'02', 1, ?, NULL), (x'03', 1, ?, 0)`, now-1, now+3600, now+3600)
	mustExec(t, w, `INSERT INTO login_throttle(ip, failures, first_failed_at, last_failed_at, locked_until) VALUES
		('stale', 3, 1, ?, NULL), ('locked', 10, 1, ?, ?), ('recent', 1, 1, ?, NULL)`,
		now-storage.ThrottleIdleRetention-1, now-storage.ThrottleIdleRetention-1, now+60, now-10)
	st, err := w.PruneExpired(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := storage.PruneStats{Sessions: 2, EnrollmentTokens: 2, ThrottleRows: 1}
	if st != want {
		t.Fatalf("pruned %+v, want %+v", st, want)
	}
	var left int
	if err := db.Reader().QueryRow(ctx, "SELECT COUNT(*) FROM login_throttle WHERE ip IN ('locked','recent')").Scan(&left); err != nil || left != 2 {
		t.Fatalf("throttle rows kept = %d (%v), want locked and recent", left, err)
	}
}

func TestAppendRunEventsNumbersPerRun(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "job1", "run1", "run2")
	err := db.Write(ctx, func(q storage.Q) error {
		return q.AppendRunEvents(ctx, []storage.RunEvent{
			{RunID: "run1", Kind: "queued", Level: "info", Message: "a"},
			{RunID: "run2", Kind: "queued", Level: "info", Message: "b"},
			{RunID: "run1", Kind: "start", Level: "info", Message: "c"},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := db.Reader().ListRunEvents(ctx, "run1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Seq != 1 || evs[1].Seq != 2 || evs[1].Message != "c" {
		t.Fatalf("run1 events = %+v", evs)
	}
	evs, _ = db.Reader().ListRunEvents(ctx, "run1", 1, 10)
	if len(evs) != 1 || evs[0].Seq != 2 {
		t.Fatalf("run1 events after 1 = %+v", evs)
	}
}

// Many goroutines doing read-then-write transactions at once must all succeed: this is the
// property the writer pool exists for. (How fast is for the benchmark.)
func TestConcurrentReadThenWriteNeverLocks(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	seedJobAndRuns(t, db, "job1", "run1")
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				err := db.Write(ctx, func(q storage.Q) error {
					if _, err := q.GetRun(ctx, "run1"); err != nil {
						return err
					}
					return q.PutSetting(ctx, fmt.Sprintf("g%d", g), fmt.Sprint(i), int64(i))
				})
				if err != nil {
					t.Errorf("goroutine %d: %v (locked: %v)", g, err, storage.IsLocked(err))
					return
				}
			}
		}()
	}
	wg.Wait()
}

func seedJobAndRuns(t testing.TB, db *storage.DB, jobID string, runIDs ...string) {
	t.Helper()
	ctx := context.Background()
	err := db.Write(ctx, func(q storage.Q) error {
		if err := q.InsertJob(ctx, storage.Job{ID: jobID, Name: jobID, ScheduleTimezone: "UTC", OverlapPolicy: "queue",
			MissedRunPolicy: "run_once", SpecJSON: "{}", CreatedAt: 1, UpdatedAt: 1}); err != nil {
			return err
		}
		for i, id := range runIDs {
			if err := q.InsertRun(ctx, storage.Run{ID: id, JobID: jobID, Status: storage.RunQueued, StartedAt: int64(i + 1)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustExec(t testing.TB, q storage.Q, query string, args ...any) {
	t.Helper()
	if _, err := q.Exec(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func TestDatabaseFilesAreOwnerOnly(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	if err := db.Writer().PutSetting(context.Background(), "k", "1", 1); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		st, err := os.Stat(db.Path() + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v, want no access for group or others", filepath.Base(db.Path()+suffix), perm)
		}
	}
}

func TestWriteRollsBackWhenTheCallbackPanics(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic was swallowed")
			}
		}()
		_ = db.Write(ctx, func(q storage.Q) error {
			if err := q.PutSetting(ctx, "half", "1", 1); err != nil {
				return err
			}
			panic("bug in a callback")
		})
	}()
	// The writer connection is free again (this would wait forever otherwise) and the half-done
	// transaction left nothing behind.
	done := make(chan error, 1)
	go func() { done <- db.Writer().PutSetting(ctx, "after", "1", 1) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-t.Context().Done():
		t.Fatal("the writer connection stayed in the panicked transaction")
	}
	if _, err := db.Reader().GetSetting(ctx, "half"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("setting written by the panicked transaction: %v", err)
	}
}

func TestCloseLeavesNoPlannerStatistics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bastion.db")
	db, err := storage.Open(ctx, path, storage.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	seedJobAndRuns(t, db, "job", "r1", "r2")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = storage.Open(ctx, path, storage.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.Reader().QueryRow(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("sqlite_stat1 exists after a close (%v): small-table statistics would mislead the planner later", err)
	}
}
