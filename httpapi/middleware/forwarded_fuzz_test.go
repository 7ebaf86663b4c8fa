package middleware_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/httpapi/middleware"
)

// FuzzParseForwardedFor checks what the throttle key and the logs rely on, for any header:
// no panic; the answer is the peer or an untrusted address that appears in the header, never a
// trusted proxy's and never one with a zone; the same input gives the same answer; and whatever a
// client puts in front of the entries the proxies appended (prefix) cannot change an answer taken
// from those entries, so one client cannot make its failed logins count against another.
func FuzzParseForwardedFor(f *testing.F) {
	for _, seed := range []struct {
		header string
		peer   string
	}{
		{"203.0.113.7", "10.0.0.2"},
		{"1.1.1.1, 203.0.113.7, 10.0.0.9", "10.0.0.2"},
		{"198.51.100.1\n203.0.113.7, 10.0.0.9", "10.0.0.2"},
		{"203.0.113.7:4711, [2001:db8::1]:443", "::1"},
		{"fe80::1%eth0", "10.0.0.2"},
		{"::ffff:203.0.113.7", "10.0.0.2"},
		{"203.0.113.7,,10.0.0.9", "10.0.0.2"},
		{"[::1]", "127.0.0.1"},
		{"unknown", "10.0.0.2"},
		{"", "192.0.2.1"},
	} {
		f.Add(seed.header, seed.peer, "1.2.3.4")
	}
	trusted := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("fd00::/8"),
	}
	f.Fuzz(func(t *testing.T, header, peerText, prefix string) {
		peer, err := netip.ParseAddr(peerText)
		if err != nil || peer.Zone() != "" {
			peer = netip.MustParseAddr("10.0.0.2")
		}
		peer = peer.Unmap()
		headers := strings.Split(header, "\n")
		got := middleware.ParseForwardedFor(headers, peer, trusted)
		if again := middleware.ParseForwardedFor(headers, peer, trusted); again != got {
			t.Fatalf("not deterministic: %v then %v", got, again)
		}
		if !got.IsValid() || got.Zone() != "" || got.Is4In6() {
			t.Fatalf("answer %v is not a plain address", got)
		}
		if got == peer {
			return
		}
		for _, p := range trusted {
			if p.Contains(got) {
				t.Fatalf("answer %v is a trusted proxy", got)
			}
		}
		if !inHeader(headers, got) {
			t.Fatalf("answer %v does not appear in %q", got, headers)
		}
		spoofed := append([]string{prefix}, headers...)
		if again := middleware.ParseForwardedFor(spoofed, peer, trusted); again != got {
			t.Fatalf("a client-supplied prefix %q changed the answer from %v to %v", prefix, got, again)
		}
		spoofed = append([]string{prefix + "," + headers[0]}, headers[1:]...)
		if again := middleware.ParseForwardedFor(spoofed, peer, trusted); again != got {
			t.Fatalf("a client-supplied prefix %q changed the answer from %v to %v", prefix, got, again)
		}
	})
}

func inHeader(headers []string, a netip.Addr) bool {
	for _, h := range headers {
		for _, part := range strings.Split(h, ",") {
			s := strings.TrimSpace(part)
			if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Unmap() == a {
				return true
			}
			s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
			if b, err := netip.ParseAddr(s); err == nil && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}
