//go:build unix

// Package hooks runs a job's before and after commands: argv without a shell, in a process group
// of their own that a timeout or a cancel kills whole, with their output turned into run events.
package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
)

// Output limits: a chatty or hostile hook cannot flood the run's event log.
const (
	// MaxStreamBytes is how much of each of stdout and stderr becomes events.
	MaxStreamBytes = 64 << 10
	// MaxLineBytes splits a line without a newline this long into several events.
	MaxLineBytes = 4 << 10
	// MaxStreamLines caps the events of one stream: each is a write to the run's log, and 64 KiB
	// of one-byte lines would be 32768 of them.
	MaxStreamLines = 1000
)

// Event kinds.
const (
	KindStarted   = "hook_started"
	KindOutput    = "hook_output"
	KindTruncated = "hook_output_truncated"
	KindFinished  = "hook_finished"
	KindFailed    = "hook_failed"
)

// Emitter receives run events (the shape of backup.EventSink).
type Emitter interface {
	Emit(level, kind, message string, fields map[string]any)
}

// Command is one hook to run.
type Command struct {
	Name    string // before | after
	Argv    []string
	Timeout time.Duration
	// Env is added to the process's environment (KEY=VALUE).
	Env []string
}

// Error is a hook that failed: it could not start, exited non-zero, timed out or was canceled.
type Error struct {
	Hook     string
	ExitCode int // -1 when the hook did not exit by itself
	TimedOut bool
	Err      error
}

func (e *Error) Error() string {
	switch {
	case e.TimedOut:
		return fmt.Sprintf("the %s hook timed out; its process group was killed", e.Hook)
	case e.ExitCode > 0:
		return fmt.Sprintf("the %s hook exited with status %d", e.Hook, e.ExitCode)
	}
	return fmt.Sprintf("the %s hook failed: %v", e.Hook, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Environ is the environment a hook starts with: this process's, less its BASTION_* variables
// (configuration that can hold secrets, such as an enrollment token), plus extra.
func Environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BASTION_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Run runs c to its end and reports it through ev. It returns nil when the command exited 0,
// else an *Error. The timeout is measured on clk; on timeout or when ctx ends the whole process
// group gets SIGKILL. Once the command's own process exits, what it left running in its group
// is killed too, so that nothing a hook started outlives it (a process that leaves the group
// with setsid escapes this).
func Run(ctx context.Context, clk clock.Clock, c Command, ev Emitter) error {
	if len(c.Argv) == 0 {
		return &Error{Hook: c.Name, ExitCode: -1, Err: errors.New("no command")}
	}
	ev = &lockedEmitter{ev: ev} // stdout and stderr are read concurrently
	fields := func(more map[string]any) map[string]any {
		f := map[string]any{"hook": c.Name}
		for k, v := range more {
			f[k] = v
		}
		return f
	}
	// Only the program is logged: arguments may hold credentials (a URL with a token).
	ev.Emit("info", KindStarted, fmt.Sprintf("%s hook: running %s", c.Name, c.Argv[0]), fields(map[string]any{"program": c.Argv[0]}))

	outR, outW, err := os.Pipe()
	if err != nil {
		return failed(ev, fields, &Error{Hook: c.Name, ExitCode: -1, Err: fmt.Errorf("create stdout pipe: %w", err)})
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return failed(ev, fields, &Error{Hook: c.Name, ExitCode: -1, Err: fmt.Errorf("create stderr pipe: %w", err)})
	}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env = Environ(c.Env...)
	// *os.File outputs go to the child as they are: Wait does not wait for a copy that a
	// grandchild holding the pipe would keep open.
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	timer := clk.NewTimer(c.Timeout)
	defer timer.Stop()
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return failed(ev, fields, &Error{Hook: c.Name, ExitCode: -1, Err: fmt.Errorf("start %s: %w", c.Argv[0], err)})
	}
	pgid := cmd.Process.Pid
	var wg sync.WaitGroup
	for _, s := range []struct {
		name string
		r    *os.File
	}{{"stdout", outR}, {"stderr", errR}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.r.Close()
			pump(s.r, func(line string) {
				ev.Emit("info", KindOutput, line, fields(map[string]any{"stream": s.name}))
			}, func(dropped int64) {
				ev.Emit("warn", KindTruncated, fmt.Sprintf("%s hook: %s cut (at most %d KiB and %d lines are recorded), %d bytes not recorded", c.Name, s.name, MaxStreamBytes>>10, MaxStreamLines, dropped),
					fields(map[string]any{"stream": s.name, "dropped_bytes": dropped}))
			})
		}()
	}
	started := clk.Now()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	timedOut := false
	select {
	case werr = <-waited:
	case <-timer.C():
		timedOut = true
		killGroup(pgid)
		werr = <-waited
	case <-ctx.Done():
		killGroup(pgid)
		werr = <-waited
	}
	killGroup(pgid) // leftovers: the pipes close and nothing outlives the hook
	wg.Wait()
	took := clk.Now().Sub(started)
	switch {
	case timedOut:
		return failed(ev, fields, &Error{Hook: c.Name, ExitCode: -1, TimedOut: true, Err: context.DeadlineExceeded})
	case ctx.Err() != nil:
		return failed(ev, fields, &Error{Hook: c.Name, ExitCode: -1, Err: fmt.Errorf("run canceled: %w", ctx.Err())})
	case werr != nil:
		code := -1
		var xe *exec.ExitError
		if errors.As(werr, &xe) {
			code = xe.ExitCode()
		}
		return failed(ev, fields, &Error{Hook: c.Name, ExitCode: code, Err: werr})
	}
	ev.Emit("info", KindFinished, fmt.Sprintf("%s hook: %s exited 0", c.Name, c.Argv[0]),
		fields(map[string]any{"exit_code": 0, "duration_ms": took.Milliseconds()}))
	return nil
}

func failed(ev Emitter, fields func(map[string]any) map[string]any, e *Error) error {
	ev.Emit("warn", KindFailed, e.Error(), fields(map[string]any{"exit_code": e.ExitCode, "timed_out": e.TimedOut}))
	return e
}

// killGroup sends SIGKILL to a hook's process group; a group already gone is no error.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// pump reads r to its end and calls line for each line (without its newline) of the first
// MaxStreamBytes, at most MaxStreamLines times; a longer line is split every MaxLineBytes. What
// follows a cap is read and dropped, and counted once at the end.
func pump(r io.Reader, line func(string), truncated func(dropped int64)) {
	buf := make([]byte, 32<<10)
	var pending []byte
	var recorded, dropped int64
	lines := 0
	flush := func(b []byte) {
		if lines >= MaxStreamLines {
			dropped += int64(len(b)) + 1
			return
		}
		lines++
		line(strings.ToValidUTF8(string(bytes.TrimRight(b, "\r")), "\uFFFD"))
	}
	for {
		n, err := r.Read(buf)
		chunk := buf[:n]
		if room := MaxStreamBytes - recorded; int64(len(chunk)) > room {
			dropped += int64(len(chunk)) - max(room, 0)
			chunk = chunk[:max(room, 0)]
		}
		recorded += int64(len(chunk))
		pending = append(pending, chunk...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			flush(pending[:i])
			pending = pending[i+1:]
		}
		for len(pending) >= MaxLineBytes {
			flush(pending[:MaxLineBytes])
			pending = pending[MaxLineBytes:]
		}
		pending = append([]byte(nil), pending...)
		if err != nil {
			break
		}
	}
	if len(pending) > 0 {
		flush(pending)
	}
	if dropped > 0 {
		truncated(dropped)
	}
}

type lockedEmitter struct {
	mu sync.Mutex
	ev Emitter
}

func (l *lockedEmitter) Emit(level, kind, message string, fields map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev.Emit(level, kind, message, fields)
}
