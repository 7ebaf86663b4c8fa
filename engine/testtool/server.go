package testtool

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// startServer starts cmd with its output captured and kills it when the test ends, logging the
// output if the test failed. exited is closed once the process has ended.
func startServer(t testing.TB, name string, cmd *exec.Cmd) (out *LockedBuffer, exited <-chan struct{}) {
	t.Helper()
	out = &LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, strings.TrimSpace(out.String()))
		}
	})
	return out, done
}

// waitHTTP sends the request newReq builds until the server answers anything, the process exits
// or the deadline (30 s or the test's, whichever is sooner) passes, and returns the status of the
// first answer. Polling an external process that gives no readiness signal is the one place a
// short wait between attempts is unavoidable.
func waitHTTP(t testing.TB, exited <-chan struct{}, newReq func(context.Context) (*http.Request, error)) (status int, err error) {
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if td, ok := d.Deadline(); ok && td.Before(deadline) {
			deadline = td
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	wait := 5 * time.Millisecond
	for {
		req, err := newReq(ctx)
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-exited:
			timer.Stop()
			return 0, fmt.Errorf("exited before answering")
		case <-ctx.Done():
			timer.Stop()
			return 0, fmt.Errorf("not answering before the deadline: %w", err)
		case <-timer.C:
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}
