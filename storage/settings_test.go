package storage_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func TestReadSettingFileNeitherMigratesNorCreates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := storage.ReadSettingFile(ctx, filepath.Join(t.TempDir(), "none.db"), "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	db := storagetest.Open(t)
	if _, err := storage.ReadSettingFile(ctx, db.Path(), "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if err := db.Writer().PutSetting(ctx, "k", `{"log":"debug"}`, 1); err != nil {
		t.Fatal(err)
	}
	if v, err := storage.ReadSettingFile(ctx, db.Path(), "k"); err != nil || v != `{"log":"debug"}` {
		t.Fatalf("ReadSettingFile = %q, %v", v, err)
	}
}
