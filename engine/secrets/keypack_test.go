package secrets_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/secrets"
)

// vectorKeypack holds vectorKeyring sealed under "keypack password", built with the Argon2
// reference CLI and libsodium (see TestOpenIndependentVectors): the original's keypack format.
const vectorKeypack = `{"version": 1, "created_at": 1700000000, "kdf": {"kind": "argon2id", "salt_b64": "MDEyMzQ1Njc4OWFiY2RlZg==", "mem_cost_kib": 65536, "time_cost": 3, "parallelism": 1}, "cipher": {"kind": "xchacha20poly1305", "nonce_b64": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX", "ciphertext_b64": "LQo933BS+3aRTvyQwRzw3bMu2b3IaRSzuxHXdHMyfrGOtdRXknNh2EFwUUpE2Uxghzcr58DH8uzS22z3A3A7edw83Pefjh9MHxpMcPTf3wVQUy++IPoCIW+DcX+6ihmJVx9GQuFfAVleUdPezCtkZ76f5Ls0ZQKLKo99+SkTy/MdfkZjXtz+5k5QvuiQ9FGRkF1YuBzsZDvlIw=="}}`

func TestImportIndependentKeypack(t *testing.T) {
	t.Parallel()
	k, err := secrets.ImportKeypack([]byte(vectorKeypack), "keypack password")
	if err != nil {
		t.Fatal(err)
	}
	pt, err := k.Open("hub", "webdav", "nas", secrets.Sealed{KID: 1, Nonce: mustHex(t, vectorNonce), Ciphertext: mustHex(t, vectorCTNode)})
	if err != nil || string(pt) != vectorPlain {
		t.Fatalf("imported keyring does not open the vector: %q %v", pt, err)
	}
	if _, err := secrets.ImportKeypack([]byte(vectorKeypack), "keypack passwort"); !errors.Is(err, secrets.ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestKeypackRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	k1, _ := secrets.NewKeyring(now)
	k2, _ := k1.Rotate(now)
	sealed, _ := k1.Seal("hub", "webdav", "nas", []byte("old"))
	pack, err := secrets.ExportKeypack(k2, "pack-password-123", now)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"pack-password-123", "key_b64", "active_kid"} {
		if strings.Contains(string(pack), leak) {
			t.Fatalf("keypack shows %q in clear", leak)
		}
	}
	back, err := secrets.ImportKeypack(pack, "pack-password-123")
	if err != nil || back.ActiveKID() != 2 || len(back.KIDs()) != 2 {
		t.Fatalf("import: %v %v", back, err)
	}
	if pt, err := back.Open("hub", "webdav", "nas", sealed); err != nil || string(pt) != "old" {
		t.Fatalf("imported keyring: %q %v", pt, err)
	}
	if _, err := secrets.ExportKeypack(k2, "", now); err == nil {
		t.Fatal("empty password accepted")
	}
}

func TestImportKeypackRejectsDamage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, doc string
		want      error
	}{
		{"NotJSON", `nope`, secrets.ErrCorruptKeypack},
		{"Version", strings.Replace(vectorKeypack, `"version": 1`, `"version": 9`, 1), secrets.ErrCorruptKeypack},
		{"KDF", strings.Replace(vectorKeypack, `"kind": "argon2id"`, `"kind": "scrypt"`, 1), secrets.ErrCorruptKeypack},
		{"HugeMemory", strings.Replace(vectorKeypack, `65536`, `4194304`, 1), secrets.ErrCorruptKeypack},
		{"ZeroTime", strings.Replace(vectorKeypack, `"time_cost": 3`, `"time_cost": 0`, 1), secrets.ErrCorruptKeypack},
		{"ShortSalt", strings.Replace(vectorKeypack, `MDEyMzQ1Njc4OWFiY2RlZg==`, `MDEy`, 1), secrets.ErrCorruptKeypack},
		{"ShortNonce", strings.Replace(vectorKeypack, `AAECAwQFBgcICQoLDA0ODxAREhMUFRYX`, `AAEC`, 1), secrets.ErrCorruptKeypack},
		{"TamperedCiphertext", strings.Replace(vectorKeypack, `LQo933BS`, `LQo933BT`, 1), secrets.ErrWrongPassword},
		{"TruncatedCiphertext", strings.Replace(vectorKeypack, `"ciphertext_b64": "LQo9`, `"ciphertext_b64": "`, 1), secrets.ErrWrongPassword},
		{"CiphertextShorterThanTag", strings.Replace(vectorKeypack, `"ciphertext_b64": "LQo9`, `"ciphertext_b64": "AAAA", "x": "`, 1), secrets.ErrCorruptKeypack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := secrets.ImportKeypack([]byte(tc.doc), "keypack password"); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
