package snapshots

import (
	"hash/fnv"
	"time"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/storage"
)

// Limits of both queues: a task is abandoned after MaxAttempts or MaxAge, and a task left running
// longer than StuckAfter (a crash, a hung target) is retried.
const (
	MaxAttempts = 20
	MaxAge      = 30 * 24 * time.Hour
	StuckAfter  = 30 * time.Minute
)

// backoffClass is how long to wait after a failure of some kind: base·2^(attempts−1) up to cap, plus
// a jitter derived from the run id and attempt so that many tasks failing together spread out.
type backoffClass struct {
	base, cap, jitter time.Duration
	status            string // retrying, or blocked for failures a retry cannot fix without the user
}

var (
	classNetwork = backoffClass{60 * time.Second, 6 * time.Hour, 30 * time.Second, storage.TaskRetrying}
	classOther   = backoffClass{5 * time.Minute, 6 * time.Hour, 60 * time.Second, storage.TaskRetrying}
	classConfig  = backoffClass{6 * time.Hour, 24 * time.Hour, 10 * time.Minute, storage.TaskBlocked}
)

func classOf(kind string) backoffClass {
	switch kind {
	case targets.KindAuth, targets.KindPermission, targets.KindConfig:
		return classConfig
	case targets.KindNetwork, targets.KindTimeout, targets.KindRateLimited, targets.KindUpstreamUnavailable:
		return classNetwork
	}
	return classOther
}

// retryAfter returns the delay before attempt attempts+1 of runID after a failure of kind.
func retryAfter(kind, runID string, attempts int) (time.Duration, string) {
	c := classOf(kind)
	d := c.base
	for i := 1; i < attempts && d < c.cap; i++ {
		d *= 2
	}
	d = min(d, c.cap)
	h := fnv.New64a()
	h.Write([]byte(runID))
	h.Write([]byte{byte(attempts), byte(attempts >> 8)})
	return d + time.Duration(h.Sum64()%uint64(c.jitter)), c.status
}
