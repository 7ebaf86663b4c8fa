package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// TestTrimSessions: trimming keeps the newest sessions of one user (ties broken by insertion
// order), drops that user's expired ones first and never touches another user's.
func TestTrimSessions(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t)
	ctx := context.Background()
	w := db.Writer()
	mustExec(t, w, `INSERT INTO users(id, username, password_hash, created_at, updated_at) VALUES (1, 'a', 'h', 1, 1), (2, 'b', 'h', 1, 1)`)
	insert := func(id string, user, created, expires int64) {
		t.Helper()
		if err := w.InsertSession(ctx, storage.Session{ID: id, PublicID: "p-" + id, UserID: user, CSRFToken: "c",
			CreatedAt: created, ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	insert("expired", 1, 1, 50)
	for i := range 5 {
		insert(fmt.Sprint("s", i), 1, 10, 1000) // same second: insertion order decides
	}
	insert("other", 2, 1, 1000)
	evicted, err := w.TrimSessions(ctx, 1, 3, 100)
	if err != nil {
		t.Fatal(err)
	}
	if evicted != 2 {
		t.Fatalf("evicted %d live sessions, want 2", evicted)
	}
	list, err := db.Reader().ListSessions(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range list {
		got = append(got, s.ID)
		if s.LastSeenAt != s.CreatedAt || s.PublicID != "p-"+s.ID {
			t.Fatalf("session %+v", s)
		}
	}
	if fmt.Sprint(got) != "[s4 s3 s2]" {
		t.Fatalf("kept %v, want the three newest, newest first", got)
	}
	if _, err := db.Reader().GetSession(ctx, "other", 100); err != nil {
		t.Fatalf("another user's session: %v", err)
	}
	if err := w.DeleteUserSession(ctx, 1, "p-other"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("delete another user's session by public id: %v, want ErrNotFound", err)
	}
	if err := w.DeleteUserSession(ctx, 1, "p-s3"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Reader().GetSession(ctx, "s3", 100); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted session: %v", err)
	}
}
