package password_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/httpapi/password"
)

// referenceVector was produced by the Argon2 reference implementation (Debian's argon2 CLI):
//
//	echo -n "correct horse battery staple" | argon2 saltsaltsalt1234 -id -t 2 -k 19456 -p 1 -l 32 -e
//
// It is the same PHC format the Rust argon2 crate stores, so hashes in an original Hub's
// database verify here.
const referenceVector = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0MTIzNA$3sOlQyZQ3asEqhCko2TQGcIzwlkxeNQtuSu1sisMsMg"

func TestVerifyReferenceVector(t *testing.T) {
	t.Parallel()
	ok, err := password.Verify(referenceVector, "correct horse battery staple")
	if err != nil || !ok {
		t.Fatalf("reference vector: ok=%v err=%v", ok, err)
	}
	ok, err = password.Verify(referenceVector, "correct horse battery stapler")
	if err != nil || ok {
		t.Fatalf("wrong password: ok=%v err=%v", ok, err)
	}
	// Parameters may come in any order.
	reordered := strings.Replace(referenceVector, "m=19456,t=2,p=1", "p=1,t=2,m=19456", 1)
	if ok, err := password.Verify(reordered, "correct horse battery staple"); err != nil || !ok {
		t.Fatalf("reordered parameters: ok=%v err=%v", ok, err)
	}
}

func TestHashRoundTripAndFormat(t *testing.T) {
	t.Parallel()
	h1, err := password.Hash("a long enough password")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := password.Hash("a long enough password")
	if h1 == h2 {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q does not use the original's format and parameters", h1)
	}
	parts := strings.Split(h1, "$")
	if len(parts[4]) != 22 || len(parts[5]) != 43 {
		t.Fatalf("salt/hash lengths %d/%d, want 22/43 base64 characters (16/32 bytes)", len(parts[4]), len(parts[5]))
	}
	if ok, err := password.Verify(h1, "a long enough password"); !ok || err != nil {
		t.Fatalf("verify own hash: %v %v", ok, err)
	}
	if ok, _ := password.Verify(h1, "a long enough passwore"); ok {
		t.Fatal("verify accepted a wrong password")
	}
}

func TestVerifyDummyNeverMatches(t *testing.T) {
	t.Parallel()
	for _, pw := range []string{"", "password", "correct horse battery staple"} {
		if password.VerifyDummy(pw) {
			t.Fatalf("dummy matched %q", pw)
		}
	}
}

func TestVerifyRejectsMalformed(t *testing.T) {
	t.Parallel()
	const salt, key = "c2FsdHNhbHRzYWx0MTIzNA", "3sOlQyZQ3asEqhCko2TQGcIzwlkxeNQtuSu1sisMsMg"
	for _, tc := range []struct{ name, phc string }{
		{"Empty", ""},
		{"Bcrypt", "$2b$12$abcdefghijklmnopqrstuv1234567890123456789012345678901"},
		{"Argon2d", "$argon2d$v=19$m=19456,t=2,p=1$" + salt + "$" + key},
		{"Version16", "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key},
		{"MissingParam", "$argon2id$v=19$m=19456,t=2$" + salt + "$" + key},
		{"DuplicateParam", "$argon2id$v=19$m=19456,m=8,t=2,p=1$" + salt + "$" + key},
		{"UnknownParam", "$argon2id$v=19$m=19456,t=2,p=1,keyid=x$" + salt + "$" + key},
		{"HugeMemory", "$argon2id$v=19$m=4194304,t=2,p=1$" + salt + "$" + key},
		{"ZeroTime", "$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key},
		{"NegativeThreads", "$argon2id$v=19$m=19456,t=2,p=-1$" + salt + "$" + key},
		{"LeadingZero", "$argon2id$v=19$m=019456,t=2,p=1$" + salt + "$" + key},
		{"BadSalt", "$argon2id$v=19$m=19456,t=2,p=1$!!!$" + key},
		{"ShortSalt", "$argon2id$v=19$m=19456,t=2,p=1$YWJj$" + key},
		{"NoHash", "$argon2id$v=19$m=19456,t=2,p=1$" + salt},
		{"ExtraField", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key + "$x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := password.Verify(tc.phc, "correct horse battery staple")
			if ok || !errors.Is(err, password.ErrMalformed) {
				t.Fatalf("ok=%v err=%v, want ErrMalformed", ok, err)
			}
			if tc.phc != "" && strings.Contains(err.Error(), salt) {
				t.Fatalf("error echoes the hash: %v", err)
			}
		})
	}
}
