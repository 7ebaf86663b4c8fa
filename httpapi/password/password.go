// Package password hashes and verifies administrator passwords as Argon2id PHC strings
// ("$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>"), the format the original Hub's Rust argon2
// crate writes, so that users created by either implementation can log in to both.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Parameters of new hashes: the Rust argon2 crate's defaults (OWASP's Argon2id minimum), which
// the original Hub used.
const (
	DefaultMemoryKiB = 19456
	DefaultTime      = 2
	DefaultThreads   = 1
	saltLen          = 16
	keyLen           = 32
)

// Bounds on parameters read from a stored hash: a corrupt row must not make a login allocate
// gigabytes or spin for minutes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 32
	maxThreads   = 64
)

// ErrMalformed is returned for a stored hash that is not an Argon2 PHC string this package can
// verify. The error never includes the hash itself.
var ErrMalformed = errors.New("password hash is not a supported argon2 PHC string")

// b64 is the PHC flavour of base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// Params are the Argon2 cost parameters of one hash.
type Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// Default are the parameters Hash uses.
var Default = Params{MemoryKiB: DefaultMemoryKiB, Time: DefaultTime, Threads: DefaultThreads}

// Hash returns the PHC string of password under the default parameters and a fresh random salt.
func Hash(password string) (string, error) {
	return HashWith(password, Default)
}

// HashWith is Hash with explicit parameters.
func HashWith(password string, p Params) (string, error) {
	if p.MemoryKiB < 8*uint32(p.Threads) || p.Time < 1 || p.Threads < 1 {
		return "", fmt.Errorf("hash password: invalid argon2 parameters m=%d t=%d p=%d", p.MemoryKiB, p.Time, p.Threads)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: read random salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether password matches the PHC string phc. The comparison runs in constant
// time. A malformed phc is an error wrapping ErrMalformed, never a match.
func Verify(phc, password string) (bool, error) {
	h, err := parse(phc)
	if err != nil {
		return false, err
	}
	var key []byte
	switch h.alg {
	case "argon2id":
		key = argon2.IDKey([]byte(password), h.salt, h.p.Time, h.p.MemoryKiB, h.p.Threads, uint32(len(h.key)))
	case "argon2i":
		key = argon2.Key([]byte(password), h.salt, h.p.Time, h.p.MemoryKiB, h.p.Threads, uint32(len(h.key)))
	}
	return subtle.ConstantTimeCompare(key, h.key) == 1, nil
}

// dummyPHC is the hash of a random password nobody knows, under the default parameters.
// VerifyDummy checks against it so that a login for an unknown user costs what a wrong password
// costs, and the two cannot be told apart by timing.
const dummyPHC = "$argon2id$v=19$m=19456,t=2,p=1$dFdqUxzxNI+L6qXLud3s5w$UGXSqyWA+E0Wq/7LMRuOyBbzrVNS9s4i334UBBTE9ic"

// VerifyDummy does the work of Verify against a hash no password matches; it always returns
// false.
func VerifyDummy(password string) bool {
	_, _ = Verify(dummyPHC, password)
	return false
}

type parsed struct {
	alg  string
	p    Params
	salt []byte
	key  []byte
}

// parse reads "$<alg>[$v=<ver>]$<params>$<salt>$<hash>". Params are "name=value" pairs separated
// by commas in any order; m, t and p are required. The PHC "keyid" and "data" parameters are
// refused: neither implementation ever writes them.
func parse(phc string) (parsed, error) {
	var h parsed
	fields := strings.Split(phc, "$")
	if len(fields) < 5 || fields[0] != "" {
		return h, fmt.Errorf("%w: wrong number of fields", ErrMalformed)
	}
	h.alg = fields[1]
	if h.alg != "argon2id" && h.alg != "argon2i" {
		return h, fmt.Errorf("%w: algorithm %q", ErrMalformed, truncate(h.alg))
	}
	rest := fields[2:]
	if strings.HasPrefix(rest[0], "v=") {
		v, err := strconv.Atoi(strings.TrimPrefix(rest[0], "v="))
		if err != nil || v != argon2.Version {
			return h, fmt.Errorf("%w: version %q (only 19 is supported)", ErrMalformed, truncate(rest[0]))
		}
		rest = rest[1:]
	}
	if len(rest) != 3 {
		return h, fmt.Errorf("%w: wrong number of fields", ErrMalformed)
	}
	var seen [3]bool
	for _, kv := range strings.Split(rest[0], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return h, fmt.Errorf("%w: parameter without value", ErrMalformed)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || (len(v) > 1 && v[0] == '0') {
			return h, fmt.Errorf("%w: parameter %q is not a decimal number", ErrMalformed, truncate(k))
		}
		switch k {
		case "m":
			if seen[0] || n > maxMemoryKiB {
				return h, fmt.Errorf("%w: bad memory parameter", ErrMalformed)
			}
			h.p.MemoryKiB, seen[0] = uint32(n), true
		case "t":
			if seen[1] || n < 1 || n > maxTime {
				return h, fmt.Errorf("%w: bad time parameter", ErrMalformed)
			}
			h.p.Time, seen[1] = uint32(n), true
		case "p":
			if seen[2] || n < 1 || n > maxThreads {
				return h, fmt.Errorf("%w: bad parallelism parameter", ErrMalformed)
			}
			h.p.Threads, seen[2] = uint8(n), true
		default:
			return h, fmt.Errorf("%w: unsupported parameter %q", ErrMalformed, truncate(k))
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return h, fmt.Errorf("%w: m, t and p are required", ErrMalformed)
	}
	if h.p.MemoryKiB < 8*uint32(h.p.Threads) {
		return h, fmt.Errorf("%w: memory below 8 KiB per lane", ErrMalformed)
	}
	var err error
	if h.salt, err = b64.DecodeString(rest[1]); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return h, fmt.Errorf("%w: bad salt", ErrMalformed)
	}
	if h.key, err = b64.DecodeString(rest[2]); err != nil || len(h.key) < 4 || len(h.key) > 64 {
		return h, fmt.Errorf("%w: bad hash output", ErrMalformed)
	}
	return h, nil
}

// truncate keeps error messages short; the parts it is used on (algorithm and parameter names)
// carry no secret.
func truncate(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}
