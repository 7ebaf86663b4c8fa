package httpapi_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
	"github.com/bastion-backup/bastion/storage"
)

func TestNextThrottle(t *testing.T) {
	t.Parallel()
	const now = int64(10_000)
	for _, tc := range []struct {
		name  string
		prev  storage.LoginThrottle
		found bool
		want  storage.LoginThrottle
	}{
		{"First", storage.LoginThrottle{}, false, storage.LoginThrottle{IP: "ip", Failures: 1, FirstFailedAt: now, LastFailedAt: now}},
		{"Counts", storage.LoginThrottle{IP: "ip", Failures: 3, FirstFailedAt: now - 60, LastFailedAt: now - 30}, true,
			storage.LoginThrottle{IP: "ip", Failures: 4, FirstFailedAt: now - 60, LastFailedAt: now}},
		{"TenthLocks", storage.LoginThrottle{IP: "ip", Failures: 9, FirstFailedAt: now - 599, LastFailedAt: now - 1}, true,
			storage.LoginThrottle{IP: "ip", Failures: 10, FirstFailedAt: now - 599, LastFailedAt: now, LockedUntil: now + 900}},
		{"WindowEdgeStillCounts", storage.LoginThrottle{IP: "ip", Failures: 9, FirstFailedAt: now - 600, LastFailedAt: now - 1}, true,
			storage.LoginThrottle{IP: "ip", Failures: 10, FirstFailedAt: now - 600, LastFailedAt: now, LockedUntil: now + 900}},
		{"AfterWindowRestarts", storage.LoginThrottle{IP: "ip", Failures: 9, FirstFailedAt: now - 601, LastFailedAt: now - 1}, true,
			storage.LoginThrottle{IP: "ip", Failures: 1, FirstFailedAt: now, LastFailedAt: now}},
		{"WhileLockedOnlyTouchesLastFailed", storage.LoginThrottle{IP: "ip", Failures: 10, FirstFailedAt: now - 100, LastFailedAt: now - 50, LockedUntil: now + 800}, true,
			storage.LoginThrottle{IP: "ip", Failures: 10, FirstFailedAt: now - 100, LastFailedAt: now, LockedUntil: now + 800}},
		{"AfterLockRestarts", storage.LoginThrottle{IP: "ip", Failures: 10, FirstFailedAt: now - 1000, LastFailedAt: now - 950, LockedUntil: now - 100}, true,
			storage.LoginThrottle{IP: "ip", Failures: 1, FirstFailedAt: now, LastFailedAt: now}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := httpapi.NextThrottle(tc.prev, tc.found, "ip", now); got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestLoginThrottling(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	hub.Setup(t)
	c := hub.Client(t)
	bad := map[string]string{"username": apitest.Username, "password": "wrong password!"}
	good := map[string]string{"username": apitest.Username, "password": apitest.Password}
	ctx := context.Background()
	for i := range httpapi.ThrottleMaxFailures {
		hub.Clock.Advance(time.Second)
		if r := c.Do(t, "POST", "/api/auth/login", bad); r.Status != 401 || r.ErrorCode() != "invalid_credentials" {
			t.Fatalf("failure %d: %v", i+1, r)
		}
	}
	// Locked now, for 15 minutes from the tenth failure; even the right password is refused
	// without being checked.
	r := c.Do(t, "POST", "/api/auth/login", good)
	m := r.JSON(t)
	if r.Status != 429 || m["error"] != "rate_limited" || details(m)["reason"] != "throttled" || param(m, "retry_after_seconds") != float64(900) {
		t.Fatalf("locked login: %v", r)
	}
	if r.Header.Get("Retry-After") != "900" {
		t.Fatalf("Retry-After = %q", r.Header.Get("Retry-After"))
	}
	hub.Clock.Advance(15*time.Minute - time.Second)
	r = c.Do(t, "POST", "/api/auth/login", bad)
	if r.Status != 429 || param(r.JSON(t), "retry_after_seconds") != float64(1) {
		t.Fatalf("one second before unlock: %v", r)
	}
	row, err := hub.DB.Reader().GetLoginThrottle(ctx, "127.0.0.1")
	if err != nil || row.Failures != 10 || row.LockedUntil != apitest.Epoch.Add(10*time.Second+15*time.Minute).Unix() {
		t.Fatalf("throttle row while locked: %+v %v", row, err)
	}
	hub.Clock.Advance(time.Second)
	if r := c.Do(t, "POST", "/api/auth/login", good); r.Status != 200 {
		t.Fatalf("login after the lock expired: %v", r)
	}
	if _, err := hub.DB.Reader().GetLoginThrottle(ctx, "127.0.0.1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("success left the throttle row: %v", err)
	}

	// Nine failures, then a pause longer than the window: the count starts again.
	for range httpapi.ThrottleMaxFailures - 1 {
		c.Do(t, "POST", "/api/auth/login", bad)
	}
	hub.Clock.Advance(10*time.Minute + time.Second)
	if r := c.Do(t, "POST", "/api/auth/login", bad); r.Status != 401 {
		t.Fatalf("failure after the window: %v", r)
	}
	row, err = hub.DB.Reader().GetLoginThrottle(ctx, "127.0.0.1")
	if err != nil || row.Failures != 1 || row.LockedUntil != 0 || row.FirstFailedAt != hub.Clock.Now().Unix() {
		t.Fatalf("throttle row after the window restarted: %+v %v", row, err)
	}
}

func TestThrottleKeyIsTheClientBehindTrustedProxies(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}))
	hub.Setup(t)
	bad := map[string]string{"username": apitest.Username, "password": "wrong password!"}
	mallory := hub.Client(t)
	for i := range httpapi.ThrottleMaxFailures {
		// A spoofed left-most entry changes nothing: the proxy appended the real client.
		mallory.Header.Set("X-Forwarded-For", "10.9.9."+string(rune('0'+i))+", 203.0.113.66")
		mallory.Do(t, "POST", "/api/auth/login", bad)
	}
	if r := mallory.Do(t, "POST", "/api/auth/login", bad); r.Status != 429 {
		t.Fatalf("mallory after 10 failures: %v", r)
	}
	alice := hub.Client(t)
	alice.Header.Set("X-Forwarded-For", "203.0.113.7")
	if r := alice.Do(t, "POST", "/api/auth/login", map[string]string{"username": apitest.Username, "password": apitest.Password}); r.Status != 200 {
		t.Fatalf("another client is locked out by mallory: %v", r)
	}
	// A malformed header is not trusted: the key falls back to the proxy itself.
	odd := hub.Client(t)
	odd.Header.Set("X-Forwarded-For", "203.0.113.66, bogus")
	odd.Do(t, "POST", "/api/auth/login", bad)
	if _, err := hub.DB.Reader().GetLoginThrottle(context.Background(), "127.0.0.1"); err != nil {
		t.Fatalf("malformed X-Forwarded-For was not keyed on the peer: %v", err)
	}
}
