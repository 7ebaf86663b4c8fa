package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// A keypack is master.key sealed under a password, for backups and moving a Hub: the keyring
// JSON encrypted with XChaCha20-Poly1305 (AAD "bastion-keypack-v1") under an Argon2id key. The
// file format is the original's.
const (
	keypackVersion = 1
	keypackAAD     = "bastion-keypack-v1"
	keypackKDF     = "argon2id"
	keypackCipher  = "xchacha20poly1305"
	// Argon2id cost of new keypacks: 64 MiB, 3 passes, 1 lane.
	keypackMemKiB  = 64 * 1024
	keypackTime    = 3
	keypackThreads = 1
	keypackSaltLen = 16
	// Bounds on the costs a keypack file may ask for: a damaged or hostile file must not make
	// import allocate more than 1 GiB or run for minutes.
	keypackMaxMemKiB  = 1 << 20
	keypackMaxTime    = 16
	keypackMaxThreads = 16
)

// ErrWrongPassword is returned by ImportKeypack when the password does not open the keypack
// (or its ciphertext was damaged: the two cannot be told apart).
var ErrWrongPassword = errors.New("wrong password, or the keypack is damaged")

// ErrCorruptKeypack marks a file that is not a keypack this Hub can read.
var ErrCorruptKeypack = errors.New("not a valid keypack")

type keypackFile struct {
	Version   int              `json:"version"`
	CreatedAt int64            `json:"created_at"`
	KDF       keypackKDFDoc    `json:"kdf"`
	Cipher    keypackCipherDoc `json:"cipher"`
}

type keypackKDFDoc struct {
	Kind        string `json:"kind"`
	SaltB64     string `json:"salt_b64"`
	MemCostKiB  uint32 `json:"mem_cost_kib"`
	TimeCost    uint32 `json:"time_cost"`
	Parallelism uint32 `json:"parallelism"`
}

type keypackCipherDoc struct {
	Kind          string `json:"kind"`
	NonceB64      string `json:"nonce_b64"`
	CiphertextB64 string `json:"ciphertext_b64"`
}

// ExportKeypack seals k under password.
func ExportKeypack(k *Keyring, password string, now time.Time) ([]byte, error) {
	if password == "" {
		return nil, errors.New("export keypack: the password must not be empty")
	}
	plain, err := k.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("export keypack: %w", err)
	}
	salt := make([]byte, keypackSaltLen)
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("export keypack: %w", err)
	}
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("export keypack: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, keypackTime, keypackMemKiB, keypackThreads, chacha20poly1305.KeySize)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("export keypack: %w", err)
	}
	doc := keypackFile{
		Version: keypackVersion, CreatedAt: now.Unix(),
		KDF: keypackKDFDoc{Kind: keypackKDF, SaltB64: base64.StdEncoding.EncodeToString(salt),
			MemCostKiB: keypackMemKiB, TimeCost: keypackTime, Parallelism: keypackThreads},
		Cipher: keypackCipherDoc{Kind: keypackCipher, NonceB64: base64.StdEncoding.EncodeToString(nonce),
			CiphertextB64: base64.StdEncoding.EncodeToString(aead.Seal(nil, nonce, plain, []byte(keypackAAD)))},
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("export keypack: %w", err)
	}
	return append(out, '\n'), nil
}

// ImportKeypack opens a keypack with password and returns its keyring. A wrong password is
// ErrWrongPassword; a file that is not a keypack wraps ErrCorruptKeypack.
func ImportKeypack(data []byte, password string) (*Keyring, error) {
	if password == "" {
		return nil, errors.New("import keypack: the password must not be empty")
	}
	var doc keypackFile
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("import keypack: %w: not valid JSON", ErrCorruptKeypack)
	}
	bad := func(what string) error { return fmt.Errorf("import keypack: %w: %s", ErrCorruptKeypack, what) }
	switch {
	case doc.Version != keypackVersion:
		return nil, bad(fmt.Sprintf("version %d is not supported", doc.Version))
	case doc.KDF.Kind != keypackKDF:
		return nil, bad(fmt.Sprintf("kdf %q is not supported", doc.KDF.Kind))
	case doc.Cipher.Kind != keypackCipher:
		return nil, bad(fmt.Sprintf("cipher %q is not supported", doc.Cipher.Kind))
	case doc.KDF.MemCostKiB < 8 || doc.KDF.MemCostKiB > keypackMaxMemKiB,
		doc.KDF.TimeCost < 1 || doc.KDF.TimeCost > keypackMaxTime,
		doc.KDF.Parallelism < 1 || doc.KDF.Parallelism > keypackMaxThreads,
		doc.KDF.MemCostKiB < 8*doc.KDF.Parallelism:
		return nil, bad("argon2 parameters out of range")
	}
	salt, err := base64.StdEncoding.DecodeString(doc.KDF.SaltB64)
	if err != nil || len(salt) != keypackSaltLen {
		return nil, bad("salt is not 16 bytes of base64")
	}
	nonce, err := base64.StdEncoding.DecodeString(doc.Cipher.NonceB64)
	if err != nil || len(nonce) != chacha20poly1305.NonceSizeX {
		return nil, bad("nonce is not 24 bytes of base64")
	}
	ct, err := base64.StdEncoding.DecodeString(doc.Cipher.CiphertextB64)
	if err != nil || len(ct) < chacha20poly1305.Overhead {
		return nil, bad("ciphertext is not base64 or is truncated")
	}
	key := argon2.IDKey([]byte(password), salt, doc.KDF.TimeCost, doc.KDF.MemCostKiB, uint8(doc.KDF.Parallelism), chacha20poly1305.KeySize)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("import keypack: %w", err)
	}
	plain, err := aead.Open(nil, nonce, ct, []byte(keypackAAD))
	if err != nil {
		return nil, fmt.Errorf("import keypack: %w", ErrWrongPassword)
	}
	k, err := ParseKeyring(plain)
	if err != nil {
		return nil, fmt.Errorf("import keypack: %w", err)
	}
	return k, nil
}
