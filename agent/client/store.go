package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bastion-backup/bastion/agent/protocol"
)

// Task record states.
const (
	taskAccepted = "accepted" // recorded before the ACK; running, or interrupted by a crash
	taskDone     = "done"     // has a result
)

// taskRecord is <data>/agent/tasks/<task_id>.json. It is written (and fsynced) before the ACK,
// so a task the Hub believes delivered is never run twice, even across agent restarts.
type taskRecord struct {
	V          int                  `json:"v"`
	TaskID     string               `json:"task_id"`
	RunID      string               `json:"run_id"`
	Kind       string               `json:"kind"`
	State      string               `json:"state"`
	AcceptedAt int64                `json:"accepted_at"`
	Result     *protocol.TaskResult `json:"result,omitempty"`
	// OpResult is the result of a restore or verify task (kind "restore", "verify"), which the
	// protocol reports as an operation_result.
	OpResult    *protocol.OperationResult `json:"op_result,omitempty"`
	ResultAcked bool                      `json:"result_acked"`
	UpdatedAt   int64                     `json:"updated_at"`
}

// Task record kinds.
const (
	kindBackup  = "backup"
	kindRestore = "restore"
	kindVerify  = "verify"
)

// isOperation: the task reports with operation_event/operation_result (restores, verifies).
func isOperation(kind string) bool { return kind == kindRestore || kind == kindVerify }

// hasResult reports whether the task has ended.
func (r *taskRecord) hasResult() bool { return r.Result != nil || r.OpResult != nil }

// resultMessage is the message that reports the task's end to the Hub, or nil.
func (r *taskRecord) resultMessage() protocol.Message {
	switch {
	case r.OpResult != nil:
		return &protocol.OperationResultMsg{Result: *r.OpResult}
	case r.Result != nil:
		res := *r.Result
		return &res
	}
	return nil
}

// InterruptedCode is summary.error_code of a task that was running when the agent died. It is
// not run again: the Hub learns what happened instead.
const InterruptedCode = "agent_interrupted"

// recordRetention: records whose result the Hub acknowledged are kept this long, so that a
// re-send already in flight when the acknowledgement arrived is still recognised.
const recordRetention = 7 * 24 * time.Hour

var safeID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

type taskStore struct {
	dir string
	now func() time.Time

	mu   sync.Mutex
	recs map[string]*taskRecord
}

// openTaskStore loads every record. A record still "accepted" belongs to a task that was running
// when the agent stopped: it gets a failed result now, to be sent to the Hub, and never runs again.
func openTaskStore(dir string, now func() time.Time) (*taskStore, []string, error) {
	s := &taskStore{dir: dir, now: now, recs: map[string]*taskRecord{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create task store: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read task store: %w", err)
	}
	var interrupted []string
	cutoff := now().Add(-recordRetention).Unix()
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			if strings.Contains(name, ".tmp-") {
				os.Remove(filepath.Join(dir, name)) // a write cut short by a crash
			}
			continue
		}
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, fmt.Errorf("read task record %s: %w", name, err)
		}
		var r taskRecord
		if err := json.Unmarshal(b, &r); err != nil || r.V != 1 || r.TaskID+".json" != name {
			return nil, nil, fmt.Errorf("task record %s is damaged; move it away to start (the task it names may run again)", filepath.Join(dir, name))
		}
		if r.ResultAcked && r.UpdatedAt < cutoff {
			os.Remove(filepath.Join(dir, name))
			continue
		}
		s.recs[r.TaskID] = &r
		if r.State == taskAccepted {
			msg := "the agent stopped while this task was running; it was not run again"
			summary := json.RawMessage(`{"error_code":"` + InterruptedCode + `"}`)
			if isOperation(r.Kind) {
				r.OpResult = &protocol.OperationResult{OpID: r.TaskID, Status: protocol.StatusFailed, Summary: summary, Error: &msg}
			} else {
				r.Result = &protocol.TaskResult{TaskID: r.TaskID, RunID: r.RunID, Status: protocol.StatusFailed,
					Summary: summary, Error: &msg}
			}
			r.State = taskDone
			if err := s.write(&r); err != nil {
				return nil, nil, err
			}
			interrupted = append(interrupted, r.TaskID)
		}
	}
	return s, interrupted, nil
}

func (s *taskStore) write(r *taskRecord) error {
	r.UpdatedAt = s.now().Unix()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode task record %s: %w", r.TaskID, err)
	}
	return writeFileAtomic(filepath.Join(s.dir, r.TaskID+".json"), b)
}

// get returns a copy of a record.
func (s *taskStore) get(id string) (taskRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[id]
	if !ok {
		return taskRecord{}, false
	}
	return *r, true
}

var errKnownTask = errors.New("task already recorded")

// accept durably records a new task; errKnownTask if it is already known.
func (s *taskStore) accept(id, runID, kind string) error {
	if !safeID.MatchString(id) {
		return fmt.Errorf("task id %q is not safe to store", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recs[id]; ok {
		return errKnownTask
	}
	r := &taskRecord{V: 1, TaskID: id, RunID: runID, Kind: kind, State: taskAccepted, AcceptedAt: s.now().Unix()}
	if err := s.write(r); err != nil {
		return err
	}
	s.recs[id] = r
	return nil
}

// finish durably records a backup task's result.
func (s *taskStore) finish(id string, res protocol.TaskResult) error {
	return s.update(id, func(r *taskRecord) { r.State, r.Result = taskDone, &res })
}

// finishOp durably records a restore or verify task's result.
func (s *taskStore) finishOp(id string, res protocol.OperationResult) error {
	return s.update(id, func(r *taskRecord) { r.State, r.OpResult = taskDone, &res })
}

func (s *taskStore) update(id string, change func(*taskRecord)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[id]
	if !ok {
		return fmt.Errorf("finish task %s: not recorded", id)
	}
	nr := *r
	change(&nr)
	if err := s.write(&nr); err != nil {
		return err
	}
	*r = nr
	return nil
}

// ackResult marks a result as applied by the Hub; it stops being re-sent.
func (s *taskStore) ackResult(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[id]
	if !ok || r.ResultAcked || !r.hasResult() {
		return nil
	}
	nr := *r
	nr.ResultAcked = true
	if err := s.write(&nr); err != nil {
		return err
	}
	*r = nr
	return nil
}

// unackedResults returns the results the Hub has not acknowledged (task_result or
// operation_result messages), oldest task first.
func (s *taskStore) unackedResults() []protocol.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []*taskRecord
	for _, r := range s.recs {
		if r.hasResult() && !r.ResultAcked {
			recs = append(recs, r)
		}
	}
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].AcceptedAt != recs[j].AcceptedAt {
			return recs[i].AcceptedAt < recs[j].AcceptedAt
		}
		return recs[i].TaskID < recs[j].TaskID
	})
	out := make([]protocol.Message, len(recs))
	for i, r := range recs {
		out[i] = r.resultMessage()
	}
	return out
}
