//go:build unix

package hooks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
)

type event struct {
	level, kind, message string
	fields               map[string]any
}

type recorder struct {
	mu  sync.Mutex
	evs []event
}

func (r *recorder) Emit(level, kind, message string, fields map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, event{level, kind, message, fields})
}

func (r *recorder) output(stream string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		if e.kind == KindOutput && e.fields["stream"] == stream {
			out = append(out, e.message)
		}
	}
	return out
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		if e.kind != KindOutput {
			out = append(out, e.kind)
		}
	}
	return out
}

func fake() *clock.Fake { return clock.NewFake(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)) }

func TestOutputBecomesEventsAndEnvIsSet(t *testing.T) {
	t.Parallel()
	var rec recorder
	err := Run(context.Background(), fake(), Command{Name: "before", Timeout: time.Hour,
		Argv: []string{"sh", "-c", `echo "one two"; echo oops >&2; printf 'id=%s\n' "$BASTION_JOB_ID"; printf 'no newline'`},
		Env:  []string{"BASTION_JOB_ID=job-1"}}, &rec)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.output("stdout"), "|"); got != "one two|id=job-1|no newline" {
		t.Fatalf("stdout events %q", got)
	}
	if got := strings.Join(rec.output("stderr"), "|"); got != "oops" {
		t.Fatalf("stderr events %q", got)
	}
	if got := strings.Join(rec.kinds(), ","); got != "hook_started,hook_finished" {
		t.Fatalf("events %s", got)
	}
}

func TestArgvIsNotAShellLine(t *testing.T) {
	t.Parallel()
	var rec recorder
	if err := Run(context.Background(), fake(), Command{Name: "before", Timeout: time.Hour,
		Argv: []string{"echo", "$HOME; rm -rf /tmp/x", "`id`"}}, &rec); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.output("stdout"), "|"); got != "$HOME; rm -rf /tmp/x `id`" {
		t.Fatalf("stdout %q", got)
	}
}

func TestNonZeroExitAndMissingProgramFail(t *testing.T) {
	t.Parallel()
	var rec recorder
	err := Run(context.Background(), fake(), Command{Name: "before", Timeout: time.Hour, Argv: []string{"sh", "-c", "exit 3"}}, &rec)
	var he *Error
	if !errors.As(err, &he) || he.ExitCode != 3 || he.TimedOut {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "exited with status 3") {
		t.Fatalf("message %q", err)
	}
	err = Run(context.Background(), fake(), Command{Name: "after", Timeout: time.Hour, Argv: []string{"/nonexistent/bastion-hook"}}, &rec)
	if !errors.As(err, &he) || he.ExitCode != -1 || !strings.Contains(err.Error(), "start /nonexistent/bastion-hook") {
		t.Fatalf("err = %v", err)
	}
}

// Environ drops the process's own BASTION_* configuration (an agent's enrollment token, say).
func TestEnvironDropsBastionVariables(t *testing.T) {
	t.Setenv("BASTION_ENROLL_TOKEN", "secret-token")
	t.Setenv("PGHOST", "db.internal")
	env := strings.Join(Environ("BASTION_RUN_ID=r1"), "\n")
	if strings.Contains(env, "secret-token") || !strings.Contains(env, "PGHOST=db.internal") || !strings.Contains(env, "BASTION_RUN_ID=r1") {
		t.Fatalf("env:\n%s", env)
	}
}

// waitFile polls for a file the hook writes (its pids), up to the test's deadline.
func waitFile(t *testing.T, path string) []int {
	t.Helper()
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			var pids []int
			for _, f := range strings.Fields(string(b)) {
				p, err := strconv.Atoi(f)
				if err != nil {
					t.Fatal(err)
				}
				pids = append(pids, p)
			}
			return pids
		}
		if d, ok := t.Deadline(); ok && time.Now().After(d.Add(-5*time.Second)) {
			t.Fatalf("the hook never wrote %s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gone reports whether pid has exited (a zombie waiting for init counts as gone), polling up to
// the test's deadline.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X') {
			return
		}
		if d, ok := t.Deadline(); ok && time.Now().After(d.Add(-5*time.Second)) {
			t.Fatalf("process %d is still running", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A hook that hangs is killed at its timeout, and so is the child it started.
func TestTimeoutKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	clk := fake()
	pidfile := filepath.Join(t.TempDir(), "pids")
	var rec recorder
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), clk, Command{Name: "before", Timeout: 30 * time.Second,
			Argv: []string{"sh", "-c", `sleep 1000 & echo "$$ $!" > ` + pidfile + `; wait`}}, &rec)
	}()
	pids := waitFile(t, pidfile)
	select {
	case err := <-done:
		t.Fatalf("the hook ended before its timeout: %v", err)
	default:
	}
	clk.Advance(30 * time.Second)
	err := <-done
	var he *Error
	if !errors.As(err, &he) || !he.TimedOut || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v", err)
	}
	for _, p := range pids {
		waitGone(t, p)
	}
	if k := rec.kinds(); k[len(k)-1] != KindFailed {
		t.Fatalf("events %v", k)
	}
}

// A hook that exits leaving a background child behind does not wait for it, and the child dies.
func TestLeftoverChildIsKilledWhenTheHookExits(t *testing.T) {
	t.Parallel()
	pidfile := filepath.Join(t.TempDir(), "pids")
	var rec recorder
	err := Run(context.Background(), fake(), Command{Name: "after", Timeout: time.Hour,
		Argv: []string{"sh", "-c", `sleep 1000 & echo "$!" > ` + pidfile}}, &rec)
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, waitFile(t, pidfile)[0])
}

func TestCancelKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	pidfile := filepath.Join(t.TempDir(), "pids")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, fake(), Command{Name: "before", Timeout: time.Hour,
			Argv: []string{"sh", "-c", `sleep 1000 & echo "$$ $!" > ` + pidfile + `; wait`}}, &recorder{})
	}()
	pids := waitFile(t, pidfile)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	for _, p := range pids {
		waitGone(t, p)
	}
}

// Output past MaxStreamBytes is read and dropped, and said once; a line without a newline is
// split every MaxLineBytes.
func TestOutputIsCapped(t *testing.T) {
	t.Parallel()
	var rec recorder
	err := Run(context.Background(), fake(), Command{Name: "before", Timeout: time.Hour,
		Argv: []string{"sh", "-c", `head -c 200000 /dev/zero | tr '\0' a; echo tail >&2`}}, &rec)
	if err != nil {
		t.Fatal(err)
	}
	out := rec.output("stdout")
	total := 0
	for _, l := range out {
		if len(l) > MaxLineBytes {
			t.Fatalf("event of %d bytes", len(l))
		}
		total += len(l)
	}
	if total != MaxStreamBytes || len(out) != MaxStreamBytes/MaxLineBytes {
		t.Fatalf("recorded %d bytes in %d events", total, len(out))
	}
	if got := strings.Join(rec.output("stderr"), "|"); got != "tail" {
		t.Fatalf("stderr %q", got)
	}
	var trunc []event
	for _, e := range rec.evs {
		if e.kind == KindTruncated {
			trunc = append(trunc, e)
		}
	}
	if len(trunc) != 1 || trunc[0].fields["dropped_bytes"] != int64(200000-MaxStreamBytes) {
		t.Fatalf("truncation events %+v", trunc)
	}
}

// Many short lines stop at MaxStreamLines events; the rest is counted as dropped.
func TestOutputLinesAreCapped(t *testing.T) {
	t.Parallel()
	var rec recorder
	err := Run(context.Background(), fake(), Command{Name: "after", Timeout: time.Hour,
		Argv: []string{"sh", "-c", `i=0; while [ $i -lt 3000 ]; do echo x; i=$((i+1)); done`}}, &rec)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rec.output("stdout")); n != MaxStreamLines {
		t.Fatalf("%d line events, want %d", n, MaxStreamLines)
	}
	var dropped any
	for _, e := range rec.evs {
		if e.kind == KindTruncated {
			dropped = e.fields["dropped_bytes"]
		}
	}
	if dropped != int64(2*(3000-MaxStreamLines)) {
		t.Fatalf("dropped %v", dropped)
	}
}
