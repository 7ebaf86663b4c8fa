package httpapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/storage"
)

// Login throttling policy (the original's): ThrottleMaxFailures failed logins from one client
// address within ThrottleWindow lock it out for ThrottleLock.
const (
	ThrottleMaxFailures = 10
	ThrottleWindow      = 10 * time.Minute
	ThrottleLock        = 15 * time.Minute
)

type throttle struct {
	db    *storage.DB
	clock clock.Clock
}

// lockedFor returns how long ip is still locked out, or 0.
func (t throttle) lockedFor(ctx context.Context, ip string) (time.Duration, error) {
	row, err := t.db.Reader().GetLoginThrottle(ctx, ip)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	now := t.clock.Now().Unix()
	if row.LockedUntil > now {
		return time.Duration(row.LockedUntil-now) * time.Second, nil
	}
	return 0, nil
}

// recordFailure counts a failed login of ip and reports whether ip is now locked. Read and
// update share one write transaction, so concurrent failures are all counted.
func (t throttle) recordFailure(ctx context.Context, ip string) (bool, error) {
	now := t.clock.Now().Unix()
	var locked bool
	err := t.db.Write(ctx, func(q storage.Q) error {
		prev, err := q.GetLoginThrottle(ctx, ip)
		found := err == nil
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		next := nextThrottle(prev, found, ip, now)
		locked = next.LockedUntil > now
		return q.PutLoginThrottle(ctx, next)
	})
	if err != nil {
		return false, fmt.Errorf("record failed login: %w", err)
	}
	return locked, nil
}

// nextThrottle is the throttle row after one more failure at now:
//   - while locked, only last_failed_at moves (the lock is not extended);
//   - the first failure, or one more than ThrottleWindow after the window's first failure,
//     starts a new window with a count of 1;
//   - otherwise the count grows, and reaching ThrottleMaxFailures locks until now+ThrottleLock.
func nextThrottle(prev storage.LoginThrottle, found bool, ip string, now int64) storage.LoginThrottle {
	window, lock := int64(ThrottleWindow/time.Second), int64(ThrottleLock/time.Second)
	switch {
	case found && prev.LockedUntil > now:
		prev.LastFailedAt = now
		return prev
	case !found || now-prev.FirstFailedAt > window:
		return storage.LoginThrottle{IP: ip, Failures: 1, FirstFailedAt: now, LastFailedAt: now}
	}
	next := prev
	next.Failures++
	next.LastFailedAt = now
	next.LockedUntil = 0
	if next.Failures >= ThrottleMaxFailures {
		next.LockedUntil = now + lock
	}
	return next
}
