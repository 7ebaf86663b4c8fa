package httpapi

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/bastion-backup/bastion/httpapi/middleware"
	"github.com/bastion-backup/bastion/httpapi/respond"
)

// TestCheckOrigin: the run-events socket accepts the Hub's own origin (Host, scheme through a
// trusted proxy) and the --public-base-url origin, and nothing that X-Forwarded-Host claims.
func TestCheckOrigin(t *testing.T) {
	t.Parallel()
	direct := middleware.Client{}
	proxied := middleware.Client{TrustedPeer: true, HTTPS: true}
	for _, tc := range []struct {
		name    string
		client  middleware.Client
		host    string
		headers map[string]string
		public  string
		origin  string
		ok      bool
	}{
		{"Own", direct, "hub.lan:9876", nil, "", "http://hub.lan:9876", true},
		{"OwnWS", direct, "hub.lan:9876", nil, "", "ws://HUB.lan:9876", true},
		{"OtherHost", direct, "hub.lan:9876", nil, "", "http://evil.example:9876", false},
		{"NoOrigin", direct, "hub.lan:9876", nil, "", "", false},
		{"NullOrigin", direct, "hub.lan:9876", nil, "", "null", false},
		{"ProxyHTTPS", proxied, "backup.example.com", map[string]string{"X-Forwarded-Proto": "https"}, "", "https://backup.example.com", true},
		{"ProxyHTTPSDefaultPort", proxied, "backup.example.com", map[string]string{"X-Forwarded-Proto": "https"}, "", "wss://backup.example.com:443", true},
		// The old rule let a trusted proxy's X-Forwarded-Host (often passed on from the client)
		// replace the host: any origin it named was accepted.
		{"ForwardedHostIgnored", proxied, "127.0.0.1:9876", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}, "", "https://evil.example", false},
		{"ForwardedHostIgnoredWithPublic", proxied, "127.0.0.1:9876", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}, "https://backup.example.com", "https://evil.example", false},
		{"PublicBaseURL", proxied, "127.0.0.1:9876", map[string]string{"X-Forwarded-Proto": "https"}, "https://backup.example.com/bastion", "https://backup.example.com", true},
		{"PublicBaseURLOtherScheme", proxied, "127.0.0.1:9876", nil, "https://backup.example.com", "http://backup.example.com", false},
		{"PublicBaseURLOtherPort", proxied, "127.0.0.1:9876", nil, "https://backup.example.com", "https://backup.example.com:8443", false},
		{"ForwardedProtoFromUntrustedPeer", direct, "hub.lan", map[string]string{"X-Forwarded-Proto": "https"}, "", "https://hub.lan", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/api/runs/x/events/ws", nil)
			r.Host = tc.host
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			err := checkOrigin(r, tc.client, tc.public)
			var apiErr *respond.APIError
			switch {
			case tc.ok && err != nil:
				t.Fatalf("origin %q refused: %v", tc.origin, err)
			case !tc.ok && (!errors.As(err, &apiErr) || apiErr.Code != "invalid_origin"):
				t.Fatalf("origin %q: %v, want 401 invalid_origin", tc.origin, err)
			}
		})
	}
}
