package middleware

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Client is what the Hub knows about who sent a request.
type Client struct {
	Peer  netip.Addr // the TCP peer
	IP    netip.Addr // the client, through trusted proxies
	HTTPS bool       // a trusted proxy says the client used HTTPS
	// TrustedPeer: the TCP peer is one of the trusted proxies.
	TrustedPeer bool
}

// Loopback reports whether the TCP peer is on this machine.
func (c Client) Loopback() bool { return c.Peer.IsLoopback() }

// ClientIP resolves the client address and HTTPS-ness of every request. HTTPS is recognised only
// when the peer is a trusted proxy and says X-Forwarded-Proto: https, and never in insecure mode
// (where the Hub must not set Secure cookies a plain-HTTP browser would drop).
func ClientIP(trusted []netip.Prefix, insecure bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := ResolveClient(r, trusted, insecure)
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientKey, c)))
		})
	}
}

// ResolveClient computes the Client of r.
func ResolveClient(r *http.Request, trusted []netip.Prefix, insecure bool) Client {
	peer := peerAddr(r.RemoteAddr)
	c := Client{Peer: peer, IP: peer, TrustedPeer: inPrefixes(peer, trusted)}
	if c.TrustedPeer {
		c.IP = ParseForwardedFor(r.Header.Values("X-Forwarded-For"), peer, trusted)
		proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
		c.HTTPS = !insecure && strings.EqualFold(strings.TrimSpace(proto), "https")
	}
	return c
}

// GetClient returns the Client the middleware stored, or one computed from RemoteAddr alone.
func GetClient(r *http.Request) Client {
	if c, ok := r.Context().Value(clientKey).(Client); ok {
		return c
	}
	p := peerAddr(r.RemoteAddr)
	return Client{Peer: p, IP: p}
}

// ParseForwardedFor finds the client behind trusted proxies: the X-Forwarded-For entries (all
// header lines, comma lists) with the peer appended, walked right to left, skipping trusted
// addresses; the first untrusted one is the client. A malformed entry met on the way (one that a
// trusted proxy appended, or the peer itself vouches for) makes the header untrustworthy, so the
// peer is used.
//
// Entries left of the client are never parsed: the client wrote them, and letting them matter
// would let one client pick another's throttle key (a malformed left-most entry used to send
// everyone behind the proxy to the proxy's address, so one client's failed logins locked out
// all). Found by FuzzParseForwardedFor. Only call it for a trusted peer.
func ParseForwardedFor(headers []string, peer netip.Addr, trusted []netip.Prefix) netip.Addr {
	if !inPrefixes(peer, trusted) {
		return peer
	}
	for i := len(headers) - 1; i >= 0; i-- {
		h := headers[i]
		for {
			comma := strings.LastIndexByte(h, ',')
			a, ok := parseForwardedAddr(strings.TrimSpace(h[comma+1:]))
			if !ok {
				return peer
			}
			if !inPrefixes(a, trusted) {
				return a
			}
			if comma < 0 {
				break
			}
			h = h[:comma]
		}
	}
	return peer
}

// parseForwardedAddr accepts an IPv4 or IPv6 address, optionally with a port ("1.2.3.4:5",
// "[::1]:5"); zones are refused.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		s = ap.Addr().String()
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
