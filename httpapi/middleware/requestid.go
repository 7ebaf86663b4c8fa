// Package middleware holds the Hub's HTTP plumbing, applied in this order: request ID, client IP,
// access log, panic recovery, body limits, HTTPS gate.
package middleware

import (
	"math/rand/v2"
	"net/http"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// RequestIDHeader is read from clients and always set on responses.
const RequestIDHeader = "X-Request-Id"

type ctxKey int

const clientKey ctxKey = 0

// maxRequestIDLen bounds a client-sent ID we keep: long enough for a UUID or a trace id, short
// enough to keep log lines and headers small.
const maxRequestIDLen = 64

// RequestID keeps a client's X-Request-Id when it is short and made of safe characters (so it
// cannot inject into logs or headers), otherwise generates one; it echoes the ID on the response
// and puts a logger carrying request_id into the context (zerolog.Ctx).
func RequestID(base zerolog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get(RequestIDHeader)
			if !safeRequestID(id) {
				id = newRequestID()
			}
			w.Header().Set(RequestIDHeader, id)
			log := base.With().Str("request_id", id).Logger()
			ctx := respond.WithRequestID(r.Context(), id)
			next.ServeHTTP(w, r.WithContext(log.WithContext(ctx)))
		})
	}
}

func safeRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz" // Crockford's base32, lowercase

// newRequestID returns 80 random bits as 16 lowercase base32 characters: short to quote, no
// collisions in practice. The bits come from math/rand/v2's runtime generator (ChaCha8 seeded
// from the operating system, per thread): as unpredictable as the IDs need to be (they reveal
// nothing, not even how many requests came before), and without the getrandom system call per
// request that crypto/rand costs where the kernel has no vDSO for it.
func newRequestID() string {
	var b [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range 12 {
		b[i] = idAlphabet[lo&31]
		lo >>= 5
	}
	for i := 12; i < 16; i++ {
		b[i] = idAlphabet[hi&31]
		hi >>= 5
	}
	return string(b[:])
}
