package middleware

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// HostAllowlist is the set of names a Hub answers to; see AllowHosts.
type HostAllowlist struct {
	names map[string]bool
}

// NewHostAllowlist builds the set from host names or host:port values (ports are ignored; a
// URL's host is taken from its authority). Case and a trailing dot do not matter.
func NewHostAllowlist(names ...string) HostAllowlist {
	l := HostAllowlist{names: map[string]bool{"localhost": true}}
	for _, n := range names {
		if h := normalizeHost(n); h != "" {
			l.names[h] = true
		}
	}
	return l
}

// Allows reports whether a Host header value names this Hub. Any IP address literal is allowed:
// DNS rebinding, which this defends against, needs a name the attacker controls that resolves to
// the Hub, and a browser only sends an address as Host when the page itself was loaded from that
// address (then it is the Hub's own origin). So a Hub bound to 0.0.0.0 works when reached by any
// of its addresses; names must be listed. An empty Host (HTTP/1.0) carries no name and passes.
func (l HostAllowlist) Allows(host string) bool {
	h := normalizeHost(host)
	if h == "" || l.names[h] {
		return true
	}
	// After the map: a failed parse allocates its error, and listed names are the common case.
	_, err := netip.ParseAddr(h)
	return err == nil
}

// normalizeHost strips a port, IPv6 brackets and a trailing dot, and lower-cases.
func normalizeHost(hostport string) string {
	h := strings.TrimSpace(hostport)
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	return strings.ToLower(h)
}

// maxEchoedHost bounds the host name quoted back in an error.
const maxEchoedHost = 253

// AllowHosts refuses, with 421 host_not_allowed, a request whose Host header (and, from a
// trusted proxy, X-Forwarded-Host) is not one of the Hub's own names. Without it a web page on
// any site could rebind its name to the Hub's address and then talk to the Hub with the browser's
// network position: claim a fresh Hub through setup, or read the API with a session cookie set
// for that name.
//
// Paths under /agent/ are not checked — agents authenticate with a bearer key a browser does
// not hold, and an agent enrolled through a name the operator never listed keeps working — nor
// are the exact paths in open (monitors' health checks often use a container or service name).
func AllowHosts(allow HostAllowlist, open ...string) func(http.Handler) http.Handler {
	openSet := make(map[string]bool, len(open))
	for _, p := range open {
		openSet[p] = true
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/agent/") || openSet[r.URL.Path] {
				next.ServeHTTP(w, r)
				return
			}
			bad := ""
			if !allow.Allows(r.Host) {
				bad = r.Host
			} else if xfh := r.Header.Get("X-Forwarded-Host"); xfh != "" && GetClient(r).TrustedPeer {
				if fh, _, _ := strings.Cut(xfh, ","); !allow.Allows(fh) {
					bad = fh
				}
			}
			if bad == "" {
				next.ServeHTTP(w, r)
				return
			}
			name := normalizeHost(bad)
			if len(name) > maxEchoedHost {
				name = name[:maxEchoedHost]
			}
			respond.Error(w, r, respond.New(http.StatusMisdirectedRequest, "host_not_allowed",
				fmt.Sprintf("this Hub does not answer to the host name %q: start it with --allowed-host %s (or add it to BASTION_ALLOWED_HOSTS), or set --public-base-url to the URL you reach it at", name, name)).
				Param("host", name))
		})
	}
}
