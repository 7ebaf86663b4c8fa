package runs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bastion-backup/bastion/storage"
)

// StreamCheckInterval is how often Stream looks at the run's status while no event arrives.
const StreamCheckInterval = 3 * time.Second

// streamPage is the page size of SQLite replays.
const streamPage = 200

// terminalKinds are the events a run ends with; seeing one makes Stream check at once whether it
// can close.
var terminalKinds = map[string]bool{"complete": true, "failed": true, "canceled": true, "rejected": true}

// Stream sends the events of a run with seq > after, in order, without gaps or duplicates: it
// subscribes first, replays from SQLite in pages, then forwards live events, re-reading SQLite
// whenever the live feed has a gap or lagged. It returns nil once the run is terminal and its log
// has been sent (or the run was deleted), or when ctx ends; and send's error when send fails.
// While no event arrives it looks at the run every StreamCheckInterval.
func (s *Service) Stream(ctx context.Context, runID string, after int64, send func([]storage.RunEvent) error) error {
	sub := s.bus.Subscribe(runID)
	defer sub.Close()
	last := after
	replay := func() error {
		for {
			evs, err := s.db.Reader().ListRunEvents(ctx, runID, last, streamPage)
			if err != nil || len(evs) == 0 {
				return err
			}
			if err := send(evs); err != nil {
				return err
			}
			last = evs[len(evs)-1].Seq
			if len(evs) < streamPage {
				return nil
			}
		}
	}
	// over reads the status, then replays: the final event commits with the terminal status, so
	// once the status read is terminal the replay has sent everything there is.
	over := func() (bool, error) {
		run, err := s.db.Reader().GetRun(ctx, runID)
		if errors.Is(err, storage.ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if err := replay(); err != nil {
			return false, err
		}
		return isTerminal(run.Status), nil
	}
	wrap := func(err error) error {
		if err == nil || ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("stream events of run %s: %w", runID, err)
	}

	if done, err := over(); done || err != nil {
		return wrap(err)
	}
	t := s.clock.NewTimer(StreamCheckInterval)
	defer t.Stop()
	for {
		var err error
		check := false
		select {
		case <-ctx.Done():
			return nil
		case ev := <-sub.C:
			switch {
			case ev.Seq <= last:
			case ev.Seq == last+1:
				err = send([]storage.RunEvent{ev})
				last = ev.Seq
			default: // an earlier event is still being published: read the log instead
				err = replay()
			}
			check = terminalKinds[ev.Kind]
		case <-sub.Lagged():
			// Dropped events may include the final one; over replays and looks at the status.
			check = true
		case <-t.C():
			check = true
		}
		if err != nil {
			return wrap(err)
		}
		if check {
			done, err := over()
			if done || err != nil {
				return wrap(err)
			}
			t.Reset(StreamCheckInterval)
		}
	}
}
