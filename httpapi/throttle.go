package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/httpapi/respond"
	"github.com/bastion-backup/bastion/storage"
)

// Login throttling policy, per client address (the original's): ThrottleMaxFailures login
// attempts from one address within ThrottleWindow lock it out for ThrottleLock. An IPv6 client
// is keyed by its /64, which one host usually holds whole.
const (
	ThrottleMaxFailures = 10
	ThrottleWindow      = 10 * time.Minute
	ThrottleLock        = 15 * time.Minute
)

// Per-username policy: UserThrottleMaxFailures attempts on one username within UserThrottleWindow,
// from any number of addresses, lock that username for UserThrottleLock. It bounds an attacker
// who rotates addresses to about 50 guesses in two hours. Clients on this machine (loopback, as
// resolved through trusted proxies) are exempt, so that an operator locked out by someone else's
// guesses can still log in through an SSH tunnel; they stay under the per-address limit.
const (
	UserThrottleMaxFailures = 50
	UserThrottleWindow      = time.Hour
	UserThrottleLock        = time.Hour
)

// userKeyPrefix keeps username keys apart from address keys in the one throttle table.
const userKeyPrefix = "user:"

type throttlePolicy struct {
	max, window, lock int64 // count, seconds, seconds
}

var (
	ipThrottle   = throttlePolicy{ThrottleMaxFailures, int64(ThrottleWindow / time.Second), int64(ThrottleLock / time.Second)}
	userThrottle = throttlePolicy{UserThrottleMaxFailures, int64(UserThrottleWindow / time.Second), int64(UserThrottleLock / time.Second)}
)

type throttle struct {
	db    *storage.DB
	clock clock.Clock
}

// throttleKey is one counter a login attempt is charged to.
type throttleKey struct {
	key    string
	policy throttlePolicy
}

// loginKeys are the counters of a login attempt: the client's address (its /64 for IPv6) and,
// unless the client is on this machine, the username.
func loginKeys(ip netip.Addr, username string) []throttleKey {
	keys := []throttleKey{{addrKey(ip), ipThrottle}}
	if !ip.IsLoopback() {
		// The name is stored hashed: what was typed may be a password put in the wrong field. The
		// hash also keeps every key the same short length.
		sum := sha256.Sum256([]byte(username))
		keys = append(keys, throttleKey{userKeyPrefix + hex.EncodeToString(sum[:]), userThrottle})
	}
	return keys
}

// addrKey is the throttle key of a client address: an IPv4 address as is, an IPv6 address as
// its /64 (a host gets a whole /64 and can pick any address in it, 2^64 of them).
func addrKey(ip netip.Addr) string {
	switch {
	case !ip.IsValid():
		return "unknown"
	case ip.Is4():
		return ip.String()
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}

// reservation is one counted attempt: the key and the start of the window it was counted in.
type reservation struct {
	key         string
	policy      throttlePolicy
	windowStart int64
}

// reserve counts a login attempt against every key before its password is checked, in one write
// transaction (the writer runs IMMEDIATE transactions one at a time), so that however many
// attempts arrive at once, no more than a policy's maximum pass within its window. When a key is
// locked it returns how long, and counts nothing.
func (t throttle) reserve(ctx context.Context, keys []throttleKey) ([]reservation, time.Duration, error) {
	now := t.clock.Now().Unix()
	var res []reservation
	var wait int64
	err := t.db.Write(ctx, func(q storage.Q) error {
		res, wait = res[:0], 0
		prev := make([]storage.LoginThrottle, len(keys))
		found := make([]bool, len(keys))
		for i, k := range keys {
			row, err := q.GetLoginThrottle(ctx, k.key)
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			prev[i], found[i] = row, err == nil
			if found[i] && row.LockedUntil > now {
				wait = max(wait, row.LockedUntil-now)
			}
		}
		if wait > 0 {
			return nil
		}
		for i, k := range keys {
			next := k.policy.next(prev[i], found[i], k.key, now)
			if err := q.PutLoginThrottle(ctx, next); err != nil {
				return err
			}
			res = append(res, reservation{key: k.key, policy: k.policy, windowStart: next.FirstFailedAt})
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("count login attempt: %w", err)
	}
	return res, time.Duration(wait) * time.Second, nil
}

// refund takes back the attempts of a successful login, inside the transaction that creates its
// session. Only its own attempt is taken back: attempts counted concurrently or earlier stay
// counted until their window ends, so a correct password sent amid a burst of guesses, or an
// attacker's own valid account, does not reset anyone's count. A lock stays while the count is
// still at the maximum. Nothing is taken back from a window that started after the attempt.
func refund(ctx context.Context, q storage.Q, res []reservation) error {
	for _, r := range res {
		row, err := q.GetLoginThrottle(ctx, r.key)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if row.FirstFailedAt != r.windowStart || row.Failures <= 0 {
			continue
		}
		row.Failures--
		if row.Failures == 0 {
			if err := q.DeleteLoginThrottle(ctx, r.key); err != nil {
				return err
			}
			continue
		}
		if row.Failures < r.policy.max {
			row.LockedUntil = 0
		}
		if err := q.PutLoginThrottle(ctx, row); err != nil {
			return err
		}
	}
	return nil
}

// next is the throttle row after one more attempt at now:
//   - while locked, only last_failed_at moves (the lock is not extended);
//   - the first attempt, or one more than the window after the window's first attempt, starts a
//     new window with a count of 1;
//   - otherwise the count grows, and reaching the maximum locks until now+lock.
func (p throttlePolicy) next(prev storage.LoginThrottle, found bool, key string, now int64) storage.LoginThrottle {
	switch {
	case found && prev.LockedUntil > now:
		prev.LastFailedAt = now
		return prev
	case !found || now-prev.FirstFailedAt > p.window:
		next := storage.LoginThrottle{IP: key, Failures: 1, FirstFailedAt: now, LastFailedAt: now}
		if p.max <= 1 {
			next.LockedUntil = now + p.lock
		}
		return next
	}
	next := prev
	next.Failures++
	next.LastFailedAt = now
	next.LockedUntil = 0
	if next.Failures >= p.max {
		next.LockedUntil = now + p.lock
	}
	return next
}

// nextThrottle is the per-address policy's step (table-tested).
func nextThrottle(prev storage.LoginThrottle, found bool, ip string, now int64) storage.LoginThrottle {
	return ipThrottle.next(prev, found, ip, now)
}

// refuseThrottled answers 429 rate_limited with Retry-After to a client locked out for wait more;
// what names the failures counted ("logins"). It returns the seconds it asked the client to wait.
func refuseThrottled(w http.ResponseWriter, r *http.Request, wait time.Duration, what string) int64 {
	secs := int64((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", fmt.Sprint(secs))
	respond.Error(w, r, respond.New(http.StatusTooManyRequests, "rate_limited",
		fmt.Sprintf("too many failed %s; retry after %d seconds", what, secs)).
		Reason("throttled").Param("retry_after_seconds", secs))
	return secs
}
