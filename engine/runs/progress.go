package runs

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/storage"
)

// ProgressInterval is the shortest time between two progress writes of a run within a stage.
const ProgressInterval = time.Second

// stageEventKinds are the stages that get an event of their own when the progress of an agent
// run enters them (agent-protocol §6.3).
var stageEventKinds = map[string]bool{"scan": true, "packaging": true, "upload": true}

type progressState struct {
	// writeMu orders a run's progress writes (a report's and the flush's), so that an older value
	// never lands after a newer one. Taken before Service.mu.
	writeMu sync.Mutex

	// Guarded by Service.mu:
	loaded    bool // stage holds the stage stored in SQLite or written since
	stage     string
	lastWrite time.Time
	pending   *string       // newest value not written yet (throttled)
	flushing  bool          // a flushLater goroutine waits to write pending
	gone      chan struct{} // closed when the state is dropped: the run ended or was deleted
}

func newProgressState() *progressState { return &progressState{gone: make(chan struct{})} }

// dropProgressLocked forgets a run's progress state (s.mu held), if it has one.
func (s *Service) dropProgressLocked(runID string) {
	if st := s.progress[runID]; st != nil {
		delete(s.progress, runID)
		close(st.gone)
	}
}

// progressDoc is what the throttle reads of a progress value (a progress.Snapshot).
type progressDoc struct {
	Stage string           `json:"stage"`
	Done  *progress.Units  `json:"done"`
	Total *progress.Totals `json:"total"`
}

// SetProgress stores the latest progress of a live run (agent runs): at most one write a second,
// except that a stage change or reaching the total writes at once; the newest value held back is
// written when its second is up (a timer on the clock: no later report is needed) or when the
// run finishes, whichever comes first. Entering scan, packaging or upload also appends one event of
// that kind; the previous stage is read back from SQLite, so a reconnecting agent that repeats a
// stage does not duplicate it. Progress of a finished run is ignored.
func (s *Service) SetProgress(ctx context.Context, runID string, progressJSON []byte) error {
	return s.setProgress(ctx, runID, progressJSON, true)
}

// SetProgressNoStageEvents is SetProgress for a runner that logs its stages itself (the Go agent
// forwards its pipeline's own scan, packaging and upload events): it appends none.
func (s *Service) SetProgressNoStageEvents(ctx context.Context, runID string, progressJSON []byte) error {
	return s.setProgress(ctx, runID, progressJSON, false)
}

func (s *Service) setProgress(ctx context.Context, runID string, raw []byte, stageEvents bool) error {
	var doc progressDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("set progress of run %s: progress is not a JSON object: %w", runID, err)
	}
	s.mu.Lock()
	st := s.progress[runID]
	if st == nil {
		st = newProgressState()
		s.progress[runID] = st
	}
	loaded := st.loaded
	s.mu.Unlock()
	if !loaded {
		run, err := s.db.Reader().GetRun(ctx, runID)
		if err != nil {
			return fmt.Errorf("set progress of run %s: %w", runID, err)
		}
		if isTerminal(run.Status) {
			s.mu.Lock()
			if s.progress[runID] == st {
				s.dropProgressLocked(runID)
			}
			s.mu.Unlock()
			return nil
		}
		var prev progressDoc
		if run.ProgressJSON != nil {
			_ = json.Unmarshal([]byte(*run.ProgressJSON), &prev) // a bad stored value just has no stage
		}
		s.mu.Lock()
		if !st.loaded {
			st.loaded, st.stage = true, prev.Stage
		}
		s.mu.Unlock()
	}

	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	now := s.clock.Now()
	s.mu.Lock()
	stageChanged := doc.Stage != st.stage
	complete := doc.Total != nil && doc.Done != nil && doc.Done.Reached(*doc.Total)
	recent := !st.lastWrite.IsZero() && now.Sub(st.lastWrite) < ProgressInterval && !now.Before(st.lastWrite)
	if !stageChanged && !complete && recent {
		st.pending = ptr(string(raw))
		if !st.flushing && s.progress[runID] == st {
			// Armed here, not in the goroutine, so that the deadline is the window's end.
			st.flushing = true
			go s.flushLater(runID, st, s.clock.NewTimer(st.lastWrite.Add(ProgressInterval).Sub(now)))
		}
		s.mu.Unlock()
		return nil
	}
	st.lastWrite, st.stage, st.pending = now, doc.Stage, nil
	s.mu.Unlock()

	req := &appendReq{progress: &progressWrite{runID: runID, json: string(raw)}}
	if stageChanged && stageEvents && stageEventKinds[doc.Stage] {
		req.events = []storage.RunEvent{{RunID: runID, TS: now.Unix(), Level: LevelInfo, Kind: doc.Stage, Message: doc.Stage}}
	}
	if err := s.app.submit(ctx, req); err != nil {
		return fmt.Errorf("set progress of run %s: %w", runID, err)
	}
	return nil
}

// flushLater writes the value held back for a run once its one-second window is up: t fires at
// the window's end. A write in the meantime moves the window (t is armed again) or leaves nothing
// to write; the run's end (st.gone) makes the final write take the value instead. At most one
// runs per run, and it ends within a second or with the run.
func (s *Service) flushLater(runID string, st *progressState, t clock.Timer) {
	defer t.Stop()
	for {
		select {
		case <-st.gone:
			return
		case <-t.C():
		}
		st.writeMu.Lock()
		now := s.clock.Now()
		s.mu.Lock()
		v, due := st.pending, st.lastWrite.Add(ProgressInterval)
		switch {
		case v == nil || s.progress[runID] != st:
			st.flushing = false
			s.mu.Unlock()
			st.writeMu.Unlock()
			return
		case now.Before(due) && !now.Before(st.lastWrite):
			s.mu.Unlock()
			st.writeMu.Unlock()
			t.Reset(due.Sub(now))
			continue
		}
		s.mu.Unlock()
		// pending stays set during the write: a run finishing meanwhile writes it with its result.
		err := s.app.submit(context.Background(), &appendReq{progress: &progressWrite{runID: runID, json: *v}})
		s.mu.Lock()
		if err == nil {
			st.lastWrite, st.pending = now, nil
		}
		st.flushing = false
		s.mu.Unlock()
		st.writeMu.Unlock()
		if err != nil {
			// The next report or the run's end writes the value.
			s.log.Warn().Err(err).Str("run_id", runID).Msg("write held-back progress")
		}
		return
	}
}

// dropProgress forgets the progress state of a run that has ended.
func (s *Service) dropProgress(runID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropProgressLocked(runID)
}

// runProgress is the ProgressSink of a Hub-executed run (no stage events: the executor emits
// its own).
type runProgress struct {
	s     *Service
	runID string
}

func (p runProgress) SetProgress(ctx context.Context, progressJSON []byte) error {
	return p.s.setProgress(ctx, p.runID, progressJSON, false)
}
