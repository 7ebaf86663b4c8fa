package runs

import (
	"sync"

	"github.com/bastion-backup/bastion/storage"
)

// SubscriptionBuffer is how many events a subscriber may fall behind before it is marked lagged.
const SubscriptionBuffer = 1024

// Bus publishes committed run events to in-process subscribers of that run. Publishing never
// blocks: a subscriber whose buffer is full misses events and is told so through Lagged, and
// re-reads them from SQLite (the log is the source of truth; the bus only saves polling). A run
// with no subscriber costs nothing, so there is nothing to prune.
type Bus struct {
	mu   sync.Mutex
	subs map[string]map[*Subscription]struct{}
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{subs: map[string]map[*Subscription]struct{}{}} }

// Subscription receives the events of one run published after Subscribe.
type Subscription struct {
	// C delivers events in publication order, which may differ from seq order when two
	// transactions commit close together; consumers compare seq.
	C      <-chan storage.RunEvent
	c      chan storage.RunEvent
	lagged chan struct{} // cap 1: signalled when an event was dropped
	bus    *Bus
	runID  string
	once   sync.Once
}

// Subscribe starts receiving the events of runID. Close it when done.
func (b *Bus) Subscribe(runID string) *Subscription {
	c := make(chan storage.RunEvent, SubscriptionBuffer)
	s := &Subscription{C: c, c: c, lagged: make(chan struct{}, 1), bus: b, runID: runID}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.subs[runID]
	if m == nil {
		m = map[*Subscription]struct{}{}
		b.subs[runID] = m
	}
	m[s] = struct{}{}
	return s
}

// Lagged is signalled when events were dropped because C was full.
func (s *Subscription) Lagged() <-chan struct{} { return s.lagged }

// Close stops the subscription.
func (s *Subscription) Close() {
	s.once.Do(func() {
		b := s.bus
		b.mu.Lock()
		defer b.mu.Unlock()
		if m := b.subs[s.runID]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(b.subs, s.runID)
			}
		}
	})
}

// Publish delivers committed events to the subscribers of their runs.
func (b *Bus) Publish(events ...storage.RunEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ev := range events {
		for s := range b.subs[ev.RunID] {
			select {
			case s.c <- ev:
			default:
				select {
				case s.lagged <- struct{}{}:
				default:
				}
			}
		}
	}
}

// Subscribers is the number of live subscriptions of a run (tests).
func (b *Bus) Subscribers(runID string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs[runID])
}
