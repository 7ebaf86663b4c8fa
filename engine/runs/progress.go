package runs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/bastion-backup/bastion/storage"
)

// ProgressInterval is the shortest time between two progress writes of a run within a stage.
const ProgressInterval = time.Second

// stageEventKinds are the stages that get an event of their own when the progress of an agent
// run enters them (agent-protocol §6.3).
var stageEventKinds = map[string]bool{"scan": true, "packaging": true, "upload": true}

type progressState struct {
	loaded    bool // stage holds the stage stored in SQLite or written since
	stage     string
	lastWrite time.Time
	pending   *string // newest value not written yet (throttled)
}

type progressDoc struct {
	Stage string     `json:"stage"`
	Done  *progUnits `json:"done"`
	Total *progUnits `json:"total"`
}

type progUnits struct {
	Files uint64 `json:"files"`
	Dirs  uint64 `json:"dirs"`
	Bytes uint64 `json:"bytes"`
}

// SetProgress stores the latest progress of a live run (agent runs): at most one write a second,
// except that a stage change or reaching the total writes at once; the newest value held back is
// written when the run finishes. Entering scan, packaging or upload also appends one event of
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
		st = &progressState{}
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
			delete(s.progress, runID)
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

	now := s.clock.Now()
	s.mu.Lock()
	stageChanged := doc.Stage != st.stage
	complete := doc.Total != nil && doc.Done != nil && doc.Done.Files >= doc.Total.Files &&
		doc.Done.Dirs >= doc.Total.Dirs && doc.Done.Bytes >= doc.Total.Bytes
	recent := !st.lastWrite.IsZero() && now.Sub(st.lastWrite) < ProgressInterval && !now.Before(st.lastWrite)
	if !stageChanged && !complete && recent {
		st.pending = ptr(string(raw))
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

// takePending forgets a run's progress state and returns the value held back, if any.
func (s *Service) takePending(runID string) *string {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.progress[runID]
	delete(s.progress, runID)
	if st == nil {
		return nil
	}
	return st.pending
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
