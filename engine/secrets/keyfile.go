package secrets

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/bastion-backup/bastion/storage"
)

// MasterKeyFile is the keyring's name in the data directory.
const MasterKeyFile = "master.key"

// ReadKeyringFile reads the keyring at path. On Unix it refuses a file that anyone but its owner
// may read or write: the file decrypts every stored credential.
func ReadKeyringFile(path string) (*Keyring, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file", path)
	}
	if perm := info.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible to other users (mode %04o); it must be readable by its owner only: run chmod 600 %s", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	k, err := ParseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyringFile replaces path with k, atomically and durably: a 0600 temporary file in the same
// directory, fsync, rename over path, fsync of the directory. A crash leaves the old file or the
// new one, never a torn one.
func WriteKeyringFile(path string, k *Keyring) error {
	data, err := k.MarshalJSON()
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(data, '\n'))
}

// WriteFileAtomic writes a file only its owner may read (mode 0600), replacing path atomically
// and durably, the way WriteKeyringFile does: for master.key and keypacks.
func WriteFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // created 0600
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if runtime.GOOS != "windows" {
		d, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("write %s: sync directory: %w", path, err)
		}
		defer d.Close()
		if err := d.Sync(); err != nil {
			return fmt.Errorf("write %s: sync directory: %w", path, err)
		}
	}
	return nil
}

// checkSample is how many secrets per key id OpenKeyring tries to decrypt.
const checkSample = 3

// OpenKeyring applies the Hub's start-up rule for master.key at path:
//
//   - missing, and the database holds no secret: generate one (created = true);
//   - missing while secrets exist, unreadable, corrupt, or accessible to other users: refuse;
//   - lacking a key id that stored secrets use, or unable to decrypt any of the most recent
//     secrets of a key id (a master.key from another installation): refuse.
//
// It never writes a new key over existing secrets: that would make them unreadable for good.
// A single damaged secret does not stop the Hub; reading it fails with a *DecryptError.
func OpenKeyring(ctx context.Context, db *storage.DB, path string, now time.Time) (k *Keyring, created bool, err error) {
	kids, err := db.Reader().SecretKIDs(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("open master key: %w", err)
	}
	stored := 0
	for _, n := range kids {
		stored += n
	}
	_, statErr := os.Lstat(path)
	switch {
	case errors.Is(statErr, fs.ErrNotExist) && stored == 0:
		k, err := NewKeyring(now)
		if err != nil {
			return nil, false, err
		}
		if err := WriteKeyringFile(path, k); err != nil {
			return nil, false, fmt.Errorf("create master key: %w", err)
		}
		return k, true, nil
	case errors.Is(statErr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("%s is missing, but the database holds %d encrypted secrets: refusing to generate a new key, "+
			"which would make them unreadable. Restore master.key from your backup (bastion keypack import --in <file>) and start again", path, stored)
	}
	k, err = ReadKeyringFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("%w; refusing to start: fix or restore master.key (bastion keypack import --in <file> --force)", err)
	}
	for kid, n := range kids {
		if kid <= 0 || kid > maxKeyringID || !k.Has(uint32(kid)) {
			return nil, false, fmt.Errorf("%s has no key id %d, which %d stored secrets were encrypted with: "+
				"restore the master.key (or keypack) that belongs to this database", path, kid, n)
		}
		rows, err := db.Reader().SecretsWithKID(ctx, kid, checkSample)
		if err != nil {
			return nil, false, fmt.Errorf("open master key: %w", err)
		}
		if !anyOpens(k, rows) {
			return nil, false, fmt.Errorf("%s does not decrypt the stored secrets of key id %d (tried %d): it is not the key "+
				"this database was written with; restore the right master.key", path, kid, len(rows))
		}
	}
	return k, false, nil
}

func anyOpens(k *Keyring, rows []storage.SecretRow) bool {
	for _, r := range rows {
		if _, err := k.Open(r.NodeID, r.Kind, r.Name, sealedOf(r)); err == nil {
			return true
		}
	}
	return len(rows) == 0
}

func sealedOf(r storage.SecretRow) Sealed {
	return Sealed{KID: uint32(r.KID), Nonce: r.Nonce, Ciphertext: r.Ciphertext}
}
