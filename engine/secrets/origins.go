package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/bastion-backup/bastion/storage"
)

// Error codes of a stored credential refused for a URL. The API answers both with 400.
const (
	// CodeOriginMismatch: the credential is bound to other servers than the URL's.
	CodeOriginMismatch = "credential_origin_mismatch"
	// CodeOriginUnbound: the credential is bound to no server yet, so it goes nowhere.
	CodeOriginUnbound = "credential_origin_unbound"
)

// OriginError refuses to send a stored credential to a URL whose origin it is not bound to.
// Nothing was sent when it is returned. It names the secret and the origins, never the payload.
type OriginError struct {
	Code    string   // CodeOriginMismatch or CodeOriginUnbound
	Kind    string   // secret kind
	Name    string   // secret name
	Origin  string   // the refused URL's origin ("" when the URL has none)
	Allowed []string // the credential's origins
}

func (e *OriginError) Error() string {
	if e.Code == CodeOriginUnbound {
		return fmt.Sprintf("the %s credential %q is not bound to any server yet; an admin binds it by saving it with the "+
			"server's URL (Settings → Secrets: allowed servers), or by saving a job that uses it", e.Kind, e.Name)
	}
	return fmt.Sprintf("the %s credential %q may only be sent to %s, not to %s; add that server to the credential's "+
		"allowed servers (Settings → Secrets) or use another credential", e.Kind, e.Name, strings.Join(e.Allowed, ", "), e.Origin)
}

// ErrOriginsUntracked is returned by a credential source that does not know the origins of its
// credentials (an agent whose Hub sent none): the caller skips the check, which the Hub made.
var ErrOriginsUntracked = errors.New("this credential store does not track allowed origins")

// NormalizeOrigin returns the origin of an absolute http(s) URL (or of a bare origin) as
// scheme://host:port: scheme and host lowercased, a trailing dot of the host dropped, the default
// port written out, IPv6 hosts bracketed. Path, query, fragment and user info are ignored.
func NormalizeOrigin(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		// Not url.Parse's error: it quotes the whole URL, and a password typed into it with it.
		return "", errors.New("not a valid URL")
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	switch scheme {
	case "http":
		if port == "" {
			port = "80"
		}
	case "https":
		if port == "" {
			port = "443"
		}
	default:
		return "", errors.New("not an absolute http or https URL")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return "", errors.New("the URL has no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", errors.New("the URL's port is not 1..65535")
	}
	port = strings.TrimLeft(port, "0")
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

// NormalizeOrigins normalizes each of raw, dropping duplicates, sorted. The first invalid entry
// fails it with a *ValidationError on field.
func NormalizeOrigins(field string, raw []string) ([]string, error) {
	out := make([]string, 0, len(raw))
	for i, r := range raw {
		o, err := NormalizeOrigin(r)
		if err != nil {
			return nil, invalid("invalid_origin", fmt.Sprintf("%s[%d]", field, i), "invalid_format",
				"%s[%d] must be an http or https URL or origin (scheme://host[:port]): %s", field, i, err.Error())
		}
		out = append(out, o)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// CheckOrigin allows sending the credential kind/name, bound to allowed, to rawURL: nil when
// the URL's origin is one of allowed, an *OriginError otherwise. allowed entries are normalized
// again, so an origin stored by an older release (no explicit port) still matches.
func CheckOrigin(kind, name, rawURL string, allowed []string) error {
	norm := make([]string, 0, len(allowed))
	for _, a := range allowed {
		if o, err := NormalizeOrigin(a); err == nil {
			norm = append(norm, o)
		}
	}
	slices.Sort(norm)
	norm = slices.Compact(norm)
	origin, err := NormalizeOrigin(rawURL)
	if len(norm) == 0 {
		return &OriginError{Code: CodeOriginUnbound, Kind: kind, Name: name, Origin: origin}
	}
	if err != nil || !slices.Contains(norm, origin) {
		return &OriginError{Code: CodeOriginMismatch, Kind: kind, Name: name, Origin: origin, Allowed: norm}
	}
	return nil
}

// AllowedOrigins returns the normalized origins the secret (node, kind, name) may be sent to;
// empty when it is bound to none.
func (s *Store) AllowedOrigins(ctx context.Context, node, kind, name string) ([]string, error) {
	raw, err := s.db.Reader().SecretOrigins(ctx, node, kind, name)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		if o, err := NormalizeOrigin(r); err == nil {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// For returns the payload of node's secret (kind, name) for use with rawURL: an *OriginError,
// before anything is decrypted, when the credential is not bound to rawURL's origin.
func (s *Store) For(ctx context.Context, node, kind, name, rawURL string) ([]byte, error) {
	allowed, err := s.AllowedOrigins(ctx, node, kind, name)
	if err != nil {
		return nil, err
	}
	if err := CheckOrigin(kind, name, rawURL, allowed); err != nil {
		// A credential that does not exist has no origins either: say it is missing.
		if _, gerr := s.db.Reader().GetSecret(ctx, node, kind, name); errors.Is(gerr, storage.ErrNotFound) {
			return nil, fmt.Errorf("get secret %s/%s: %w", kind, name, ErrNotFound)
		}
		return nil, err
	}
	return s.Get(ctx, node, kind, name) // reads the row once; a missing one is ErrNotFound here too
}

// WebDAVFor is For for a WebDAV credential, decoded.
func (s *Store) WebDAVFor(ctx context.Context, node, name, baseURL string) (WebDAV, error) {
	raw, err := s.For(ctx, node, KindWebDAV, name, baseURL)
	if err != nil {
		return WebDAV{}, err
	}
	var w WebDAV
	if err := json.Unmarshal(raw, &w); err != nil {
		return WebDAV{}, fmt.Errorf("decode secret %s/%s: the payload is not a WebDAV credential", KindWebDAV, name)
	}
	return w, nil
}

// OriginUpdate says what a save does to a secret's origins: Replace sets exactly Origins (none:
// unbound); otherwise Origins are added to those it has. A zero OriginUpdate leaves them alone.
type OriginUpdate struct {
	Replace bool
	Origins []string // normalized (NormalizeOrigins)
}

// PutWithOrigins is Put and the origin update in one transaction: a credential is never stored
// with the origins of its previous value, nor origins without their credential.
func (s *Store) PutWithOrigins(ctx context.Context, node, kind, name string, payload []byte, up OriginUpdate) error {
	row, err := s.seal(node, kind, name, payload)
	if err != nil {
		return err
	}
	return s.db.Write(ctx, func(q storage.Q) error {
		if err := q.UpsertSecret(ctx, row); err != nil {
			return err
		}
		if up.Replace {
			return q.SetSecretOrigins(ctx, node, kind, name, up.Origins, row.UpdatedAt)
		}
		return q.AddSecretOrigins(ctx, node, kind, name, up.Origins, row.UpdatedAt)
	})
}
