package agekeys_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/bastion-backup/bastion/engine/agekeys"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

func newStore(t *testing.T) *secrets.Store {
	t.Helper()
	keys, err := secrets.NewKeyring(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return secrets.NewStore(storagetest.Open(t), keys, clock.Real{})
}

func TestKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("CreatedOnceOnFirstUseAndDecrypts", func(t *testing.T) {
		t.Parallel()
		store := newStore(t)
		k := agekeys.New(store)
		if _, err := k.Identity(ctx, "default"); !errors.Is(err, agekeys.ErrNoIdentity) {
			t.Fatalf("identity before first backup: %v", err)
		}
		// Many backups racing on a new key name end with one key.
		var wg sync.WaitGroup
		recips := make([]string, 8)
		for i := range recips {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := k.Recipient(ctx, " default ")
				if err != nil {
					t.Error(err)
					return
				}
				recips[i] = r.(*age.X25519Recipient).String()
			}()
		}
		wg.Wait()
		for _, r := range recips[1:] {
			if r != recips[0] {
				t.Fatalf("racing first uses created different keys: %v", recips)
			}
		}
		// Stored as the original does: the identity string, node hub.
		raw, err := store.Get(ctx, "hub", secrets.KindBackupAgeIdentity, "default")
		if err != nil || !strings.HasPrefix(string(raw), "AGE-SECRET-KEY-1") {
			t.Fatalf("stored payload: %q %v", raw[:min(len(raw), 16)], err)
		}
		r, _ := k.Recipient(ctx, "default")
		var ct bytes.Buffer
		w, _ := age.Encrypt(&ct, r)
		w.Write([]byte("snapshot bytes"))
		w.Close()
		id, err := k.Identity(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		rd, err := age.Decrypt(&ct, id)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := io.ReadAll(rd); string(got) != "snapshot bytes" {
			t.Fatalf("decrypted %q", got)
		}
	})

	t.Run("IdentityFromTheOriginal", func(t *testing.T) {
		t.Parallel()
		store := newStore(t)
		orig, _ := age.GenerateX25519Identity()
		// The original stores the identity string, possibly with a trailing newline.
		if err := store.Put(ctx, "hub", secrets.KindBackupAgeIdentity, "legacy", []byte(orig.String()+"\n")); err != nil {
			t.Fatal(err)
		}
		k := agekeys.New(store)
		r, err := k.Recipient(ctx, "legacy")
		if err != nil || r.(*age.X25519Recipient).String() != orig.Recipient().String() {
			t.Fatalf("recipient of an existing key: %v %v", r, err)
		}
	})

	t.Run("BadNamesAndPayloads", func(t *testing.T) {
		t.Parallel()
		store := newStore(t)
		k := agekeys.New(store)
		for _, name := range []string{"", "  ", "a/b"} {
			if _, err := k.Recipient(ctx, name); err == nil {
				t.Errorf("key name %q accepted", name)
			}
		}
		secretish := "not-an-age-key-but-secret-looking-0123456789"
		store.Put(ctx, "hub", secrets.KindBackupAgeIdentity, "broken", []byte(secretish))
		_, err := k.Identity(ctx, "broken")
		if err == nil || strings.Contains(err.Error(), secretish) {
			t.Fatalf("broken identity: %v (must fail without quoting the payload)", err)
		}
	})
}
