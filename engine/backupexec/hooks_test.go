package backupexec

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/storage"
)

func hookBundle(t *testing.T, allow bool) *bundle {
	t.Helper()
	b := setup(t)
	b.exec = New(Config{DataDir: b.dataDir, Opener: opener.New(opener.Config{Logger: zerolog.Nop()}),
		Clock: clock.Real{}, Logger: zerolog.New(zerolog.NewTestWriter(t)), AllowHooks: allow})
	return b
}

// sh returns an argv that runs script with sh, without any shell parsing of ours.
func sh(script string) []string { return []string{"sh", "-c", script} }

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		out[k] = v
	}
	return out
}

// The before hook runs first (a dump into the source directory lands in the snapshot), the after
// hook last, each with the run's identity in its environment and its output in the run's events.
func TestHooksWrapTheBackup(t *testing.T) {
	t.Parallel()
	b := hookBundle(t, true)
	envFile := filepath.Join(t.TempDir(), "env")
	req, rec := b.request(t, func(s *jobspec.Spec) {
		s.Hooks = &jobspec.Hooks{
			Before: &jobspec.BeforeHook{Command: sh(`echo "dumping $BASTION_JOB_NAME"; echo "SELECT 1;" > "$1/dump.sql"`), TimeoutSeconds: 60, OnFailure: jobspec.HookAbort},
			After:  &jobspec.AfterHook{Command: sh(`env | grep '^BASTION_' > ` + envFile), TimeoutSeconds: 60, When: jobspec.HookSuccess},
		}
		s.Hooks.Before.Command = append(s.Hooks.Before.Command, "sh", b.src)
	})
	req.Job.Name = "nightly db"
	out, err := b.exec.Execute(context.Background(), req)
	if err != nil || out.Status != storage.RunSuccess {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	if out.Artifact == nil || *out.Artifact.SourceFiles == 0 {
		t.Fatalf("no snapshot: %+v", out.Artifact)
	}
	if _, err := os.Stat(filepath.Join(b.src, "dump.sql")); err != nil {
		t.Fatal(err)
	}
	kinds := rec.kinds()
	first, last := slices.Index(kinds, "hook_started"), len(kinds)-1
	if first != 0 || kinds[last] != "hook_finished" || slices.Index(kinds, "packaging") < slices.Index(kinds, "hook_finished") {
		t.Fatalf("event order %v", kinds)
	}
	var output []string
	for _, e := range rec.events {
		if e.Kind == "hook_output" {
			output = append(output, e.Message)
		}
	}
	if strings.Join(output, "|") != "dumping nightly db" {
		t.Fatalf("hook output events %q", output)
	}
	env := readEnv(t, envFile)
	want := map[string]string{"BASTION_JOB_ID": req.Job.ID, "BASTION_JOB_NAME": "nightly db", "BASTION_RUN_ID": req.Run.ID, "BASTION_RUN_STATUS": "success"}
	if len(env) != len(want) {
		t.Fatalf("hook env %v, want exactly %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Fatalf("hook env %s=%q, want %q (all: %v)", k, env[k], v, env)
		}
	}
}

// A failing before hook with on_failure abort fails the run before anything is written, and an
// after hook for failures still runs.
func TestBeforeHookFailureAborts(t *testing.T) {
	t.Parallel()
	b := hookBundle(t, true)
	envFile := filepath.Join(t.TempDir(), "env")
	req, rec := b.request(t, func(s *jobspec.Spec) {
		s.Hooks = &jobspec.Hooks{
			Before: &jobspec.BeforeHook{Command: sh(`echo "pg_dump: connection refused" >&2; exit 2`), TimeoutSeconds: 60, OnFailure: jobspec.HookAbort},
			After:  &jobspec.AfterHook{Command: sh(`env | grep '^BASTION_RUN_STATUS' > ` + envFile), TimeoutSeconds: 60, When: jobspec.HookFailure},
		}
	})
	out, err := b.exec.Execute(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != storage.RunFailed || out.Error == nil || out.Error.Code != CodeHookFailed ||
		!strings.Contains(out.Error.Message, "exited with status 2") {
		t.Fatalf("outcome %+v %+v", out, out.Error)
	}
	if _, err := os.Stat(filepath.Join(b.baseDir, req.Job.ID, req.Run.ID)); !os.IsNotExist(err) {
		t.Fatalf("the backup ran after an aborting hook: %v", err)
	}
	if slices.Contains(rec.kinds(), "packaging") {
		t.Fatalf("events %v", rec.kinds())
	}
	if got := readEnv(t, envFile)["BASTION_RUN_STATUS"]; got != "failed" {
		t.Fatalf("after hook status %q", got)
	}
	var stderr bool
	for _, e := range rec.events {
		stderr = stderr || (e.Kind == "hook_output" && e.Message == "pg_dump: connection refused" && fieldOf(e.Fields, "stream") == "stderr")
	}
	if !stderr {
		t.Fatal("the hook's stderr is not in the run's events")
	}
}

// With on_failure continue the backup runs and the failure is a warning event.
func TestBeforeHookFailureContinues(t *testing.T) {
	t.Parallel()
	b := hookBundle(t, true)
	req, rec := b.request(t, func(s *jobspec.Spec) {
		s.Hooks = &jobspec.Hooks{Before: &jobspec.BeforeHook{Command: sh("exit 1"), TimeoutSeconds: 60, OnFailure: jobspec.HookContinue}}
	})
	out, err := b.exec.Execute(context.Background(), req)
	if err != nil || out.Status != storage.RunSuccess {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	var warned bool
	for _, e := range rec.events {
		warned = warned || (e.Kind == "hook_failure_ignored" && e.Level == "warn" && fieldOf(e.Fields, "hook") == "before")
	}
	if !warned {
		t.Fatalf("no warning event: %v", rec.kinds())
	}
}

// after.when picks the outcomes the after hook runs for; a failed after hook leaves the run's
// status alone.
func TestAfterHookWhen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		when    string
		backup  string // ok | fail
		wantRan bool
	}{
		{jobspec.HookAlways, "ok", true}, {jobspec.HookAlways, "fail", true},
		{jobspec.HookSuccess, "ok", true}, {jobspec.HookSuccess, "fail", false},
		{jobspec.HookFailure, "ok", false}, {jobspec.HookFailure, "fail", true},
	} {
		t.Run(tc.when+"_"+tc.backup, func(t *testing.T) {
			t.Parallel()
			b := hookBundle(t, true)
			marker := filepath.Join(t.TempDir(), "ran")
			req, rec := b.request(t, func(s *jobspec.Spec) {
				s.Hooks = &jobspec.Hooks{After: &jobspec.AfterHook{Command: sh(`echo "$BASTION_RUN_STATUS" > ` + marker + `; exit 7`), TimeoutSeconds: 60, When: tc.when}}
				if tc.backup == "fail" {
					s.Filesystem.Paths = []string{filepath.Join(b.src, "missing")}
				}
			})
			out, err := b.exec.Execute(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]string{"ok": storage.RunSuccess, "fail": storage.RunFailed}[tc.backup]; out.Status != want {
				t.Fatalf("status %s, want %s", out.Status, want)
			}
			got, err := os.ReadFile(marker)
			if ran := err == nil; ran != tc.wantRan {
				t.Fatalf("after hook ran = %v, want %v", ran, tc.wantRan)
			}
			if tc.wantRan {
				want := map[string]string{"ok": "success", "fail": "failed"}[tc.backup]
				if strings.TrimSpace(string(got)) != want || !slices.Contains(rec.kinds(), "hook_failure_ignored") {
					t.Fatalf("status seen by the hook %q, events %v", got, rec.kinds())
				}
			}
		})
	}
}

// An executor that does not allow hooks (an agent without --allow-hooks) fails the run with a
// clear error and runs nothing.
func TestHooksNotAllowed(t *testing.T) {
	t.Parallel()
	b := hookBundle(t, false)
	marker := filepath.Join(t.TempDir(), "ran")
	req, _ := b.request(t, func(s *jobspec.Spec) {
		s.Hooks = &jobspec.Hooks{Before: &jobspec.BeforeHook{Command: []string{"touch", marker}, TimeoutSeconds: 60, OnFailure: jobspec.HookContinue}}
	})
	out, err := b.exec.Execute(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != storage.RunFailed || out.Error == nil || out.Error.Code != CodeHooksNotAllowed || !strings.Contains(out.Error.Message, "--allow-hooks") {
		t.Fatalf("outcome %+v %+v", out, out.Error)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("a hook ran on an executor that does not allow hooks")
	}
	if _, err := os.Stat(filepath.Join(b.baseDir, req.Job.ID, req.Run.ID)); !os.IsNotExist(err) {
		t.Fatal("the backup ran without its hooks")
	}
}

func fieldOf(fields any, key string) any {
	m, _ := fields.(map[string]any)
	return m[key]
}
