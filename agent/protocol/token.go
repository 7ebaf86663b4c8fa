package protocol

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
)

// TokenBytes is the size of enrollment tokens and agent keys before encoding.
const TokenBytes = 32

// NewToken returns a fresh enrollment token or agent key: 32 random bytes, base64url, unpadded.
func NewToken() string {
	var b [TokenBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// HashToken returns SHA-256 of the decoded token, which is all the Hub stores. ok is false when
// the value is not 32 bytes of base64url: such a value is unauthorized, never looked up.
func HashToken(token string) (hash []byte, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != TokenBytes {
		return nil, false
	}
	h := sha256.Sum256(raw)
	return h[:], true
}

// WebSocketURL maps a Hub URL to its agent socket: http→ws, https→wss, sub-paths kept, then
// "agent/ws" (https://h/x → wss://h/x/agent/ws).
func WebSocketURL(hubURL string) (string, error) {
	u, err := url.Parse(hubURL)
	if err != nil {
		return "", fmt.Errorf("parse hub URL: %w", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("hub URL scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("hub URL has no host")
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/agent/ws"
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String(), nil
}

// HTTPURL joins a path such as "agent/enroll" to the Hub URL, keeping its sub-path.
func HTTPURL(hubURL, path string) (string, error) {
	u, err := url.Parse(hubURL)
	if err != nil {
		return "", fmt.Errorf("parse hub URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("hub URL scheme %q: want http or https", u.Scheme)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.TrimPrefix(path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String(), nil
}

// NewUUID returns a random (version 4) UUID string. The rest of the code base takes its ids from
// github.com/google/uuid; this package keeps its own because it must stay stdlib-only.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	return string(out)
}
