package storage

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

// Versions are allotted in ranges, so a lower-numbered migration can arrive after a higher one
// was applied; it must still be applied, exactly once.
func TestLateLowerMigrationIsApplied(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	first := []migration{
		{version: 1, name: "0001_a", sql: "CREATE TABLE a(x)"},
		{version: 50, name: "0050_b", sql: "CREATE TABLE b(x)"},
	}
	if err := applyMigrations(ctx, db, zerolog.Nop(), first); err != nil {
		t.Fatal(err)
	}
	later := []migration{first[0], {version: 10, name: "0010_c", sql: "CREATE TABLE c(x)"}, first[1]}
	if err := applyMigrations(ctx, db, zerolog.Nop(), later); err != nil {
		t.Fatalf("second pass: %v", err)
	}
	if err := applyMigrations(ctx, db, zerolog.Nop(), later); err != nil { // nothing left: no re-run
		t.Fatalf("third pass re-ran a migration: %v", err)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d migrations recorded (%v), want 3", n, err)
	}
	// A version the binary does not know means a newer Bastion wrote the database.
	err = applyMigrations(ctx, db, zerolog.Nop(), first)
	var tooNew ErrSchemaTooNew
	if !errors.As(err, &tooNew) || tooNew.DB != 10 {
		t.Fatalf("unknown recorded version: %v", err)
	}
}

func TestKnownSchemaVersionsAreTheEmbeddedOnes(t *testing.T) {
	t.Parallel()
	vs := KnownSchemaVersions()
	if len(vs) == 0 || vs[len(vs)-1] != SchemaVersion() {
		t.Fatalf("versions %v, newest %d", vs, SchemaVersion())
	}
	for i := 1; i < len(vs); i++ {
		if vs[i] <= vs[i-1] {
			t.Fatalf("not ascending: %v", vs)
		}
	}
}
