package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
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

// loginStatuses sends n logins at once (released together) with the given passwords and counts
// the answers by status.
func loginStatuses(t *testing.T, hub *apitest.Hub, xff string, passwords []string) map[int]int {
	t.Helper()
	type result struct {
		status int
		err    error
	}
	start := make(chan struct{})
	results := make(chan result, len(passwords))
	for _, pw := range passwords {
		body, _ := json.Marshal(map[string]string{"username": apitest.Username, "password": pw})
		go func() {
			req, _ := http.NewRequest("POST", hub.URL+"/api/auth/login", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if xff != "" {
				req.Header.Set("X-Forwarded-For", xff)
			}
			<-start
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- result{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- result{status: resp.StatusCode}
		}()
	}
	close(start)
	counts := map[int]int{}
	for range passwords {
		r := <-results
		if r.err != nil {
			t.Fatalf("login: %v", r.err)
		}
		counts[r.status]++
	}
	return counts
}

// TestLoginBurstIsCountedBeforeChecking: parallel guesses from one address get exactly as many
// password checks as sequential ones would; the rest, and then the right password, get 429.
func TestLoginBurstIsCountedBeforeChecking(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	hub.Setup(t)
	wrong := make([]string, 2*httpapi.ThrottleMaxFailures)
	for i := range wrong {
		wrong[i] = "wrong password!"
	}
	got := loginStatuses(t, hub, "", wrong)
	if got[401] != httpapi.ThrottleMaxFailures || got[429] != httpapi.ThrottleMaxFailures {
		t.Fatalf("20 parallel wrong logins: %v, want 10 checked (401) and 10 refused (429)", got)
	}
	r := hub.Client(t).Do(t, "POST", "/api/auth/login", map[string]string{"username": apitest.Username, "password": apitest.Password})
	if r.Status != 429 {
		t.Fatalf("the right password after the burst: %v", r)
	}
	row, err := hub.DB.Reader().GetLoginThrottle(context.Background(), "127.0.0.1")
	if err != nil || row.Failures != httpapi.ThrottleMaxFailures || row.LockedUntil == 0 {
		t.Fatalf("throttle row: %+v %v", row, err)
	}
}

// TestRightPasswordInABurstDoesNotReopen: a correct password among parallel guesses takes back
// only its own attempt; the others stay counted.
func TestRightPasswordInABurstDoesNotReopen(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	hub.Setup(t)
	pws := make([]string, 2*httpapi.ThrottleMaxFailures)
	for i := range pws {
		pws[i] = "wrong password!"
	}
	pws[3] = apitest.Password
	got := loginStatuses(t, hub, "", pws)
	if got[401]+got[200] != httpapi.ThrottleMaxFailures || got[429] != httpapi.ThrottleMaxFailures {
		t.Fatalf("burst with one right password: %v, want 10 checked and 10 refused", got)
	}
	row, err := hub.DB.Reader().GetLoginThrottle(context.Background(), "127.0.0.1")
	if err != nil || row.Failures != int64(got[401]) {
		t.Fatalf("throttle row after the burst %v: %+v %v (want the %d failures kept)", got, row, err, got[401])
	}

	// Sequentially: nine failures, a success, then one more failure locks the address.
	hub.Clock.Advance(httpapi.ThrottleLock + httpapi.ThrottleWindow + time.Second)
	c := hub.Client(t)
	bad := map[string]string{"username": apitest.Username, "password": "wrong password!"}
	for range httpapi.ThrottleMaxFailures - 1 {
		if r := c.Do(t, "POST", "/api/auth/login", bad); r.Status != 401 {
			t.Fatalf("failure: %v", r)
		}
	}
	if r := c.Do(t, "POST", "/api/auth/login", map[string]string{"username": apitest.Username, "password": apitest.Password}); r.Status != 200 {
		t.Fatalf("the right password after nine failures: %v", r)
	}
	if r := c.Do(t, "POST", "/api/auth/login", bad); r.Status != 401 {
		t.Fatalf("tenth failure: %v", r)
	}
	if r := c.Do(t, "POST", "/api/auth/login", bad); r.Status != 429 {
		t.Fatalf("the success cleared the earlier failures: %v", r)
	}
}

// TestThrottleKeysIPv6ByPrefix: every address of one /64 shares one counter.
func TestThrottleKeysIPv6ByPrefix(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}))
	hub.Setup(t)
	bad := map[string]string{"username": apitest.Username, "password": "wrong password!"}
	c := hub.Client(t)
	for i := range httpapi.ThrottleMaxFailures {
		// Half from one address, half from another of the same /64.
		addr := "2001:db8:1:2::1"
		if i%2 == 1 {
			addr = "2001:db8:1:2:ffff:ffff:ffff:9"
		}
		c.Header.Set("X-Forwarded-For", addr)
		if r := c.Do(t, "POST", "/api/auth/login", bad); r.Status != 401 {
			t.Fatalf("failure %d: %v", i+1, r)
		}
	}
	c.Header.Set("X-Forwarded-For", "2001:db8:1:2::abcd")
	if r := c.Do(t, "POST", "/api/auth/login", bad); r.Status != 429 {
		t.Fatalf("a third address of the same /64: %v", r)
	}
	c.Header.Set("X-Forwarded-For", "2001:db8:1:3::1")
	if r := c.Do(t, "POST", "/api/auth/login", bad); r.Status != 401 {
		t.Fatalf("the next /64 is another client: %v", r)
	}
	if row, err := hub.DB.Reader().GetLoginThrottle(context.Background(), "2001:db8:1:2::/64"); err != nil || row.Failures != httpapi.ThrottleMaxFailures {
		t.Fatalf("/64 row: %+v %v", row, err)
	}
}

// TestPerUsernameThrottle: rotating addresses does not give unlimited guesses at one username.
func TestPerUsernameThrottle(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}))
	hub.Setup(t)
	c := hub.Client(t)
	from := func(i int) { c.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.%d.%d", 113+i/250, 1+i%250)) }
	bad := map[string]string{"username": apitest.Username, "password": "wrong password!"}
	good := map[string]string{"username": apitest.Username, "password": apitest.Password}
	for i := range httpapi.UserThrottleMaxFailures {
		from(i)
		if r := c.Do(t, "POST", "/api/auth/login", bad); r.Status != 401 {
			t.Fatalf("failure %d: %v", i+1, r)
		}
	}
	from(httpapi.UserThrottleMaxFailures)
	r := c.Do(t, "POST", "/api/auth/login", good)
	if r.Status != 429 || param(r.JSON(t), "retry_after_seconds") != float64(httpapi.UserThrottleLock/time.Second) {
		t.Fatalf("the right password from a fresh address after %d failures: %v", httpapi.UserThrottleMaxFailures, r)
	}
	long := map[string]string{"username": strings.Repeat("é", 1000), "password": "wrong password!"}
	if r := c.Do(t, "POST", "/api/auth/login", long); r.Status != 401 {
		t.Fatalf("a long unknown username: %v", r)
	}
	var keyLen int
	if err := hub.DB.Reader().QueryRow(context.Background(), "SELECT MAX(LENGTH(CAST(ip AS BLOB))) FROM login_throttle").Scan(&keyLen); err != nil || keyLen > len("user:")+128 {
		t.Fatalf("longest throttle key: %d bytes %v", keyLen, err)
	}
	other := map[string]string{"username": "someone-else", "password": "wrong password!"}
	if r := c.Do(t, "POST", "/api/auth/login", other); r.Status != 401 {
		t.Fatalf("another username is not locked: %v", r)
	}
	// The operator on the Hub's own machine is exempt from the username lock.
	if r := hub.Client(t).Do(t, "POST", "/api/auth/login", good); r.Status != 200 {
		t.Fatalf("login from loopback during a username lock: %v", r)
	}
	hub.Clock.Advance(httpapi.UserThrottleLock)
	from(httpapi.UserThrottleMaxFailures + 1)
	if r := c.Do(t, "POST", "/api/auth/login", good); r.Status != 200 {
		t.Fatalf("login after the username lock expired: %v", r)
	}
}

func TestAddrKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.7":               "192.0.2.7",
		"2001:db8:a:b:c:d:e:f":    "2001:db8:a:b::/64",
		"2001:db8:a:b::1":         "2001:db8:a:b::/64",
		"::1":                     "::/64",
		"fe80::1234:5678:9abc:de": "fe80::/64",
	} {
		if got := httpapi.AddrKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("AddrKey(%s) = %s, want %s", in, got, want)
		}
	}
}
