package secrets_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

type bundle struct {
	db    *storage.DB
	clock *clock.Fake
	keys  *secrets.Keyring
	store *secrets.Store
	path  string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{db: storagetest.Open(t), clock: clock.NewFake(time.Unix(1_800_000_000, 0)), path: filepath.Join(t.TempDir(), secrets.MasterKeyFile)}
	k, created, err := secrets.OpenKeyring(context.Background(), b.db, b.path, b.clock.Now())
	if err != nil || !created {
		t.Fatalf("first start: created=%v err=%v", created, err)
	}
	b.keys = k
	b.store = secrets.NewStore(b.db, k, b.clock)
	return b
}

func TestStorePutGetListDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const payload = `{"username":"alice","password":"pa55-word-in-db"}`
	if err := b.store.Put(ctx, secrets.HubNode, secrets.KindWebDAV, "nas", []byte(payload)); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Minute)
	if err := b.store.Put(ctx, secrets.HubNode, secrets.KindWebDAV, "backup-box", []byte(`{"username":"b","password":"c"}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Put(ctx, secrets.HubNode, secrets.KindSMTP, "mail", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	got, err := b.store.Get(ctx, secrets.HubNode, secrets.KindWebDAV, "nas")
	if err != nil || string(got) != payload {
		t.Fatalf("get: %q %v", got, err)
	}
	w, err := b.store.WebDAV(ctx, secrets.HubNode, "nas")
	if err != nil || w.Username != "alice" || w.Password != "pa55-word-in-db" {
		t.Fatalf("typed get: %+v %v", w, err)
	}
	list, err := b.store.List(ctx, secrets.HubNode, secrets.KindWebDAV)
	if err != nil || len(list) != 2 || list[0].Name != "backup-box" || list[1].Name != "nas" || list[1].UpdatedAt != 1_800_000_000 {
		t.Fatalf("list: %+v %v", list, err)
	}
	// Another node's secret of the same name is another secret.
	if _, err := b.store.Get(ctx, "agent-1", secrets.KindWebDAV, "nas"); !errors.Is(err, secrets.ErrNotFound) || !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("other node: %v", err)
	}
	// Upsert keeps id and created_at, moves updated_at.
	var id1 string
	b.db.Reader().QueryRow(ctx, "SELECT id FROM secrets WHERE kind='webdav' AND name='nas'").Scan(&id1)
	b.clock.Advance(time.Hour)
	if err := b.store.Put(ctx, secrets.HubNode, secrets.KindWebDAV, "nas", []byte(`{"username":"alice","password":"new"}`)); err != nil {
		t.Fatal(err)
	}
	var id2 string
	var created, updated int64
	b.db.Reader().QueryRow(ctx, "SELECT id, created_at, updated_at FROM secrets WHERE kind='webdav' AND name='nas'").Scan(&id2, &created, &updated)
	if id1 != id2 || created != 1_800_000_000 || updated != 1_800_000_000+3660 {
		t.Fatalf("upsert: id %s→%s created %d updated %d", id1, id2, created, updated)
	}
	if err := b.store.Delete(ctx, secrets.HubNode, secrets.KindWebDAV, "nas"); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Delete(ctx, secrets.HubNode, secrets.KindWebDAV, "nas"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := b.store.Get(ctx, secrets.HubNode, secrets.KindWebDAV, "nas"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}

func TestStoreNamesTheSecretItCannotDecrypt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if err := b.store.Put(ctx, secrets.HubNode, secrets.KindWebDAV, "nas", []byte(`{"username":"u","password":"do-not-echo"}`)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, sql string }{
		{"Truncated", "UPDATE secrets SET ciphertext = substr(ciphertext, 1, length(ciphertext) - 3)"},
		{"Tampered", "UPDATE secrets SET ciphertext = X'00' || substr(ciphertext, 2)"},
		{"ShortNonce", "UPDATE secrets SET nonce = X'0102'"},
		{"MovedToOtherName", "UPDATE secrets SET name = 'other'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t)
			b.store.Put(ctx, secrets.HubNode, secrets.KindWebDAV, "nas", []byte(`{"username":"u","password":"do-not-echo"}`))
			if _, err := b.db.Writer().Exec(ctx, tc.sql); err != nil {
				t.Fatal(err)
			}
			name := "nas"
			if tc.name == "MovedToOtherName" {
				name = "other"
			}
			_, err := b.store.Get(ctx, secrets.HubNode, secrets.KindWebDAV, name)
			if !errors.Is(err, secrets.ErrUndecryptable) || !strings.Contains(err.Error(), "webdav/"+name) || strings.Contains(err.Error(), "do-not-echo") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestGetOrCreateCreatesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var mu sync.Mutex
	calls := 0
	results := make([]string, 8)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := b.store.GetOrCreate(ctx, secrets.HubNode, secrets.KindBackupAgeIdentity, "default", func() ([]byte, error) {
				mu.Lock()
				defer mu.Unlock()
				calls++
				return []byte(`{"identity":"AGE-SECRET-KEY-` + string(rune('A'+calls)) + `"}`), nil
			})
			if err != nil {
				t.Error(err)
			}
			results[i] = string(got)
		}()
	}
	wg.Wait()
	if calls != 1 {
		t.Fatalf("create ran %d times", calls)
	}
	for _, r := range results {
		if r != results[0] || r == "" {
			t.Fatalf("callers got different payloads: %q", results)
		}
	}
}

func TestOpenKeyringStartRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)

	t.Run("ReuseExisting", func(t *testing.T) {
		b := setup(t)
		b.store.Put(ctx, secrets.HubNode, secrets.KindWebDAV, "nas", []byte(`{"username":"u","password":"p"}`))
		k, created, err := secrets.OpenKeyring(ctx, b.db, b.path, now)
		if err != nil || created || k.ActiveKID() != 1 {
			t.Fatalf("second start: %v %v %v", k, created, err)
		}
	})
	t.Run("MissingWithSecretsRefuses", func(t *testing.T) {
		b := setup(t)
		b.store.Put(ctx, secrets.HubNode, secrets.KindWebDAV, "nas", []byte(`{"username":"u","password":"p"}`))
		os.Remove(b.path)
		_, _, err := secrets.OpenKeyring(ctx, b.db, b.path, now)
		if err == nil || !strings.Contains(err.Error(), "refusing to generate a new key") || !strings.Contains(err.Error(), "1 encrypted secrets") {
			t.Fatalf("got %v", err)
		}
		if _, err := os.Stat(b.path); !os.IsNotExist(err) {
			t.Fatal("a new master.key was written over existing secrets")
		}
	})
	t.Run("MissingWithoutSecretsGenerates", func(t *testing.T) {
		b := setup(t)
		os.Remove(b.path)
		if _, created, err := secrets.OpenKeyring(ctx, b.db, b.path, now); err != nil || !created {
			t.Fatalf("got %v %v", created, err)
		}
	})
	t.Run("CorruptRefuses", func(t *testing.T) {
		b := setup(t)
		os.WriteFile(b.path, []byte(`{"version":1,"active_kid":1,"keys":[`), 0o600)
		_, _, err := secrets.OpenKeyring(ctx, b.db, b.path, now)
		if !errors.Is(err, secrets.ErrCorruptKeyring) || !strings.Contains(err.Error(), "refusing to start") {
			t.Fatalf("got %v", err)
		}
		if raw, _ := os.ReadFile(b.path); !strings.HasSuffix(string(raw), "[") {
			t.Fatal("the corrupt file was replaced")
		}
	})
	t.Run("EmptyFileRefuses", func(t *testing.T) {
		b := setup(t)
		os.WriteFile(b.path, nil, 0o600)
		if _, _, err := secrets.OpenKeyring(ctx, b.db, b.path, now); !errors.Is(err, secrets.ErrCorruptKeyring) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("BroadPermissionsRefuse", func(t *testing.T) {
		b := setup(t)
		os.Chmod(b.path, 0o644)
		if _, _, err := secrets.OpenKeyring(ctx, b.db, b.path, now); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("UnreadableRefuses", func(t *testing.T) {
		b := setup(t)
		os.Remove(b.path)
		os.Mkdir(b.path, 0o700) // a directory where the file should be
		if _, _, err := secrets.OpenKeyring(ctx, b.db, b.path, now); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ForeignKeyRefuses", func(t *testing.T) {
		b := setup(t)
		b.store.Put(ctx, secrets.HubNode, secrets.KindWebDAV, "nas", []byte(`{"username":"u","password":"p"}`))
		other, _ := secrets.NewKeyring(now) // also kid 1, another key
		secrets.WriteKeyringFile(b.path, other)
		_, _, err := secrets.OpenKeyring(ctx, b.db, b.path, now)
		if err == nil || !strings.Contains(err.Error(), "does not decrypt the stored secrets") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("MissingKIDRefuses", func(t *testing.T) {
		b := setup(t)
		rotated, _ := b.keys.Rotate(now)
		secrets.NewStore(b.db, rotated, b.clock).Put(ctx, secrets.HubNode, secrets.KindWebDAV, "nas", []byte(`{"username":"u","password":"p"}`))
		// master.key on disk still holds only kid 1.
		_, _, err := secrets.OpenKeyring(ctx, b.db, b.path, now)
		if err == nil || !strings.Contains(err.Error(), "no key id 2") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("OneDamagedSecretDoesNotBlockStart", func(t *testing.T) {
		b := setup(t)
		b.store.Put(ctx, secrets.HubNode, secrets.KindWebDAV, "good", []byte(`{"username":"u","password":"p"}`))
		b.clock.Advance(time.Second)
		b.store.Put(ctx, secrets.HubNode, secrets.KindWebDAV, "bad", []byte(`{"username":"u","password":"p"}`))
		b.db.Writer().Exec(ctx, "UPDATE secrets SET ciphertext = X'00' || substr(ciphertext, 2) WHERE name = 'bad'")
		if _, _, err := secrets.OpenKeyring(ctx, b.db, b.path, now); err != nil {
			t.Fatalf("got %v", err)
		}
	})
}
