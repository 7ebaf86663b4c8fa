package middleware_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/httpapi/middleware"
)

// chainParseForwardedFor is the previous implementation, kept as the benchmark's baseline: it
// parsed every entry into a slice before walking it (and let a malformed left-most entry decide).
func chainParseForwardedFor(headers []string, peer netip.Addr, trusted []netip.Prefix) netip.Addr {
	var chain []netip.Addr
	for _, h := range headers {
		for _, part := range strings.Split(h, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(part))
			if err != nil {
				return peer
			}
			chain = append(chain, a)
		}
	}
	chain = append(chain, peer)
	for i := len(chain) - 1; i >= 0; i-- {
		in := false
		for _, p := range trusted {
			in = in || p.Contains(chain[i])
		}
		if !in {
			return chain[i]
		}
	}
	return peer
}

// BenchmarkParseForwardedFor: a typical request behind two proxies, and a client padding the
// header with 200 spoofed entries (which the walk never reads).
func BenchmarkParseForwardedFor(b *testing.B) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	peer := netip.MustParseAddr("10.0.0.2")
	padded := strings.Repeat("198.51.100.9, ", 200) + "203.0.113.7, 10.0.0.9"
	for _, in := range []struct{ name, header string }{
		{"typical", "203.0.113.7, 10.0.0.9"},
		{"padded", padded},
	} {
		for _, impl := range []struct {
			name string
			f    func([]string, netip.Addr, []netip.Prefix) netip.Addr
		}{{"chain", chainParseForwardedFor}, {"walk", middleware.ParseForwardedFor}} {
			b.Run("in="+in.name+"/impl="+impl.name, func(b *testing.B) {
				hdr := []string{in.header}
				b.ReportAllocs()
				for b.Loop() {
					if impl.f(hdr, peer, trusted).String() != "203.0.113.7" {
						b.Fatal("wrong client")
					}
				}
			})
		}
	}
}
