// Package jobgate keeps restore drills and backups of the same job apart, and bounds how many
// drills read from one target at once.
//
// The runs table says which backups run; this process says which drills run. A backup about to
// be claimed holds a "starting" mark while its claim commits, and a drill checks the runs table
// only while no such mark is held, under the same mutex: either the drill sees the committed
// running backup, or the backup sees the drill and stays queued. Neither side waits on a lock
// across I/O of the other.
package jobgate

import (
	"context"
	"fmt"
	"sync"
)

// DefaultPerTarget is how many drills may read from one target at once unless configured.
const DefaultPerTarget = 1

// Gate is safe for concurrent use. The zero value is not usable; call New.
type Gate struct {
	perTarget int

	mu       sync.Mutex
	starting map[string]int // job id -> backups being claimed
	drills   map[string]int // job id -> drills running
	targets  map[string]int // target key -> drills running
	onFree   []func()
}

// New returns a gate allowing perTarget drills per target (<= 0: DefaultPerTarget).
func New(perTarget int) *Gate {
	if perTarget <= 0 {
		perTarget = DefaultPerTarget
	}
	return &Gate{perTarget: perTarget, starting: map[string]int{}, drills: map[string]int{}, targets: map[string]int{}}
}

// OnDrillEnd registers fn to run (without the gate's lock) whenever a drill ends, so the run
// queue looks again at a backup that waited for it. Call before use.
func (g *Gate) OnDrillEnd(fn func()) { g.onFree = append(g.onFree, fn) }

// BackupStarting reports whether a backup of jobID may be claimed now. When ok, call done once
// the claim has committed (or failed).
func (g *Gate) BackupStarting(jobID string) (done func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.drills[jobID] > 0 {
		return nil, false
	}
	g.starting[jobID]++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			if g.starting[jobID]--; g.starting[jobID] <= 0 {
				delete(g.starting, jobID)
			}
			g.mu.Unlock()
		})
	}, true
}

// Why a drill may not start now.
const (
	BusyBackup = "backup_running" // a backup of the job runs (or is being claimed)
	BusyDrill  = "drill_running"  // another drill of the job runs
	BusyTarget = "target_busy"    // the target's drill slots are taken
)

// TryDrill takes a slot for a drill of jobID reading targetKey. backupRunning is asked, under the
// gate's lock, whether the database shows a running backup of the job. On success release must
// be called when the drill ends; otherwise busy says why it must wait.
func (g *Gate) TryDrill(ctx context.Context, jobID, targetKey string, backupRunning func(context.Context) (bool, error)) (release func(), busy string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.starting[jobID] > 0:
		return nil, BusyBackup, nil
	case g.drills[jobID] > 0:
		return nil, BusyDrill, nil
	case g.targets[targetKey] >= g.perTarget:
		return nil, BusyTarget, nil
	}
	running, err := backupRunning(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("check backups of job %s: %w", jobID, err)
	}
	if running {
		return nil, BusyBackup, nil
	}
	g.hold(jobID, targetKey)
	var once sync.Once
	return func() { once.Do(func() { g.release(jobID, targetKey) }) }, "", nil
}

// Hold takes a drill slot unconditionally: for a drill found running at start-up (on an agent,
// still owing its result), which must keep excluding backups until it ends.
func (g *Gate) Hold(jobID, targetKey string) (release func()) {
	g.mu.Lock()
	g.hold(jobID, targetKey)
	g.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { g.release(jobID, targetKey) }) }
}

func (g *Gate) hold(jobID, targetKey string) {
	g.drills[jobID]++
	g.targets[targetKey]++
}

func (g *Gate) release(jobID, targetKey string) {
	g.mu.Lock()
	if g.drills[jobID]--; g.drills[jobID] <= 0 {
		delete(g.drills, jobID)
	}
	if g.targets[targetKey]--; g.targets[targetKey] <= 0 {
		delete(g.targets, targetKey)
	}
	g.mu.Unlock()
	for _, fn := range g.onFree {
		fn()
	}
}
