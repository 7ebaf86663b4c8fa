package secrets_test

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/secrets"
)

// The vectors below were computed independently of this package, with libsodium (PyNaCl's
// crypto_aead_xchacha20poly1305_ietf_encrypt), HMAC-SHA256 for HKDF and the Argon2 reference CLI,
// following the original's format: subkey = HKDF-SHA256(master key, no salt, "secrets-v1"),
// AAD "<node>:<kind>:<name>" (legacy "<kind>:<name>").
const (
	vectorKeyring = `{"version":1,"active_kid":1,"keys":[{"kid":1,"key_b64":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","created_at":1700000000}]}`
	vectorNonce   = "6465666768696a6b6c6d6e6f707172737475767778797a7b"
	vectorCTNode  = "ec6ea210284250264c7e64eac4a9d7b0e140ad8e36dce3700a56d9a7a481a1f16ce9aab33f7d4a4be3a98a468653983349b354a5c80697c9cba59b31bd43a5"
	vectorCTOld   = "ec6ea210284250264c7e64eac4a9d7b0e140ad8e36dce3700a56d9a7a481a1f16ce9aab33f7d4a4be3a98a4686539803efe667de9e1d88103e5ffa4b639b3a"
	vectorPlain   = `{"username":"alice","password":"s3cret-vector"}`
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenIndependentVectors(t *testing.T) {
	t.Parallel()
	k, err := secrets.ParseKeyring([]byte(vectorKeyring))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, ct string }{{"NodeScoped", vectorCTNode}, {"LegacyAAD", vectorCTOld}} {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := k.Open("hub", "webdav", "nas", secrets.Sealed{KID: 1, Nonce: mustHex(t, vectorNonce), Ciphertext: mustHex(t, tc.ct)})
			if err != nil || string(pt) != vectorPlain {
				t.Fatalf("open: %q %v", pt, err)
			}
		})
	}
	// The binding holds: the same ciphertext under another name, kind or node does not open.
	for _, other := range [][3]string{{"hub", "webdav", "nas2"}, {"hub", "smtp", "nas"}, {"agent-1", "webdav", "nas"}} {
		_, err := k.Open(other[0], other[1], other[2], secrets.Sealed{KID: 1, Nonce: mustHex(t, vectorNonce), Ciphertext: mustHex(t, vectorCTNode)})
		if !errors.Is(err, secrets.ErrUndecryptable) {
			t.Errorf("opened as %v: %v", other, err)
		}
	}
}

func TestSealOpenRotate(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	k1, err := secrets.NewKeyring(now)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := k1.Seal("hub", "webdav", "nas", []byte("payload-1"))
	if err != nil || s1.KID != 1 || len(s1.Nonce) != 24 || len(s1.Ciphertext) != len("payload-1")+16 {
		t.Fatalf("seal: %+v %v", s1, err)
	}
	s1b, _ := k1.Seal("hub", "webdav", "nas", []byte("payload-1"))
	if string(s1.Nonce) == string(s1b.Nonce) || string(s1.Ciphertext) == string(s1b.Ciphertext) {
		t.Fatal("two seals share a nonce")
	}
	k2, err := k1.Rotate(now.Add(time.Hour))
	if err != nil || k2.ActiveKID() != 2 || k1.ActiveKID() != 1 || len(k2.KIDs()) != 2 {
		t.Fatalf("rotate: %v %v (old keyring must be unchanged)", k2, err)
	}
	s2, _ := k2.Seal("hub", "webdav", "nas", []byte("payload-2"))
	if s2.KID != 2 {
		t.Fatalf("new seals use kid %d, want 2", s2.KID)
	}
	if pt, err := k2.Open("hub", "webdav", "nas", s1); err != nil || string(pt) != "payload-1" {
		t.Fatalf("rotated keyring cannot read an old secret: %q %v", pt, err)
	}
	var de *secrets.DecryptError
	if _, err := k1.Open("hub", "webdav", "nas", s2); !errors.As(err, &de) || de.KID != 2 || !strings.Contains(err.Error(), "webdav/nas") {
		t.Fatalf("old keyring on a new secret: %v", err)
	}
	// Round trip through JSON keeps every key.
	raw, err := k2.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	k3, err := secrets.ParseKeyring(raw)
	if err != nil || k3.ActiveKID() != 2 {
		t.Fatalf("parse own output: %v %v", k3, err)
	}
	if pt, err := k3.Open("hub", "webdav", "nas", s2); err != nil || string(pt) != "payload-2" {
		t.Fatalf("reparsed keyring: %q %v", pt, err)
	}
	if strings.Contains(k3.String(), "key_b64") || strings.Contains(k3.String(), string(raw[40:60])) {
		t.Fatalf("String leaks key material: %s", k3)
	}
}

func TestOpenDamagedNeverPanics(t *testing.T) {
	t.Parallel()
	k, _ := secrets.NewKeyring(time.Unix(0, 0))
	good, _ := k.Seal("hub", "smtp", "mail", []byte(`{"password":"pw-in-payload"}`))
	flip := func(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i] ^= 1; return c }
	for _, tc := range []struct {
		name string
		s    secrets.Sealed
	}{
		{"Truncated", secrets.Sealed{KID: 1, Nonce: good.Nonce, Ciphertext: good.Ciphertext[:len(good.Ciphertext)-1]}},
		{"TruncatedBelowTag", secrets.Sealed{KID: 1, Nonce: good.Nonce, Ciphertext: good.Ciphertext[:5]}},
		{"Empty", secrets.Sealed{KID: 1, Nonce: good.Nonce}},
		{"FlippedCiphertext", secrets.Sealed{KID: 1, Nonce: good.Nonce, Ciphertext: flip(good.Ciphertext, 3)}},
		{"FlippedTag", secrets.Sealed{KID: 1, Nonce: good.Nonce, Ciphertext: flip(good.Ciphertext, len(good.Ciphertext)-1)}},
		{"FlippedNonce", secrets.Sealed{KID: 1, Nonce: flip(good.Nonce, 0), Ciphertext: good.Ciphertext}},
		{"ShortNonce", secrets.Sealed{KID: 1, Nonce: good.Nonce[:12], Ciphertext: good.Ciphertext}},
		{"NoNonce", secrets.Sealed{KID: 1, Ciphertext: good.Ciphertext}},
		{"UnknownKID", secrets.Sealed{KID: 7, Nonce: good.Nonce, Ciphertext: good.Ciphertext}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := k.Open("hub", "smtp", "mail", tc.s)
			var de *secrets.DecryptError
			if pt != nil || !errors.As(err, &de) || !errors.Is(err, secrets.ErrUndecryptable) {
				t.Fatalf("got %q, %v", pt, err)
			}
			if !strings.Contains(err.Error(), "smtp/mail") || strings.Contains(err.Error(), "pw-in-payload") {
				t.Fatalf("error must name the secret and nothing of its payload: %v", err)
			}
		})
	}
}

func TestParseKeyringRejects(t *testing.T) {
	t.Parallel()
	const key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	for _, tc := range []struct{ name, doc string }{
		{"Empty", ``},
		{"NotJSON", `not json`},
		{"Truncated", vectorKeyring[:40]},
		{"Version2", `{"version":2,"active_kid":1,"keys":[{"kid":1,"key_b64":"` + key + `","created_at":1}]}`},
		{"NoKeys", `{"version":1,"active_kid":1,"keys":[]}`},
		{"ActiveMissing", `{"version":1,"active_kid":2,"keys":[{"kid":1,"key_b64":"` + key + `","created_at":1}]}`},
		{"DuplicateKID", `{"version":1,"active_kid":1,"keys":[{"kid":1,"key_b64":"` + key + `","created_at":1},{"kid":1,"key_b64":"` + key + `","created_at":1}]}`},
		{"ZeroKID", `{"version":1,"active_kid":0,"keys":[{"kid":0,"key_b64":"` + key + `","created_at":1}]}`},
		{"ShortKey", `{"version":1,"active_kid":1,"keys":[{"kid":1,"key_b64":"AAEC","created_at":1}]}`},
		{"BadBase64", `{"version":1,"active_kid":1,"keys":[{"kid":1,"key_b64":"!!!!","created_at":1}]}`},
		{"KIDString", `{"version":1,"active_kid":"1","keys":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := secrets.ParseKeyring([]byte(tc.doc))
			if !errors.Is(err, secrets.ErrCorruptKeyring) {
				t.Fatalf("got %v", err)
			}
			if strings.Contains(err.Error(), key) {
				t.Fatalf("error leaks the key: %v", err)
			}
		})
	}
}

func TestKeyringFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, secrets.MasterKeyFile)
	k, _ := secrets.NewKeyring(time.Unix(1_800_000_000, 0))
	if err := secrets.WriteKeyringFile(path, k); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("master.key mode %v, want 0600 (%v)", info.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	back, err := secrets.ReadKeyringFile(path)
	if err != nil || back.ActiveKID() != 1 {
		t.Fatalf("read back: %v %v", back, err)
	}
	// Rewriting (rotation) replaces the file in place, still 0600.
	k2, _ := k.Rotate(time.Unix(1_800_000_100, 0))
	if err := secrets.WriteKeyringFile(path, k2); err != nil {
		t.Fatal(err)
	}
	if back, err := secrets.ReadKeyringFile(path); err != nil || back.ActiveKID() != 2 {
		t.Fatalf("after rotation: %v %v", back, err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := secrets.ReadKeyringFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o accepted: %v", mode, err)
		}
	}
	os.Chmod(path, 0o400)
	if _, err := secrets.ReadKeyringFile(path); err != nil {
		t.Fatalf("read-only for the owner is fine: %v", err)
	}
}

// TestSealBindingIsUnambiguous: secret names may contain ':', so the AAD "node:kind:name" stays
// one-to-one only while node ids and kinds cannot; a ciphertext never opens as another secret's.
func TestSealBindingIsUnambiguous(t *testing.T) {
	t.Parallel()
	k, err := secrets.NewKeyring(time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{{"agent:webdav", "x"}, {"agent", "webdav:x"}} {
		if _, err := k.Seal(c[0], c[1], "n", []byte("p")); err == nil {
			t.Fatalf("sealed for node %q kind %q", c[0], c[1])
		}
	}
	s, err := k.Seal("agent", "webdav", "a:b", []byte("p"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open("agent", "webdav", "a:b", s); err != nil {
		t.Fatalf("open own secret: %v", err)
	}
	if _, err := k.Open("agent", "webdav:a", "b", s); err == nil {
		t.Fatal("a secret opened under another (kind, name) with the same joined AAD")
	}
}
