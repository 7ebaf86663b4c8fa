package jobspec

import (
	"reflect"
	"strings"
)

// Hook bounds and values (a Go-rewrite addition).
const (
	DefaultHookTimeoutSeconds = 300
	MaxHookTimeoutSeconds     = 86400
	MaxHookArgs               = 256

	HookAbort    = "abort"
	HookContinue = "continue"

	HookAlways  = "always"
	HookSuccess = "success"
	HookFailure = "failure"
)

// Hooks are commands run around a backup, without a shell.
type Hooks struct {
	Before *BeforeHook `json:"before,omitempty"`
	After  *AfterHook  `json:"after,omitempty"`
}

// BeforeHook runs before the source is read; OnFailure says whether a failure (a non-zero exit,
// a timeout, a command that cannot start) aborts the run.
type BeforeHook struct {
	Command        []string `json:"command"`
	TimeoutSeconds int      `json:"timeout_seconds"`
	OnFailure      string   `json:"on_failure"`
}

// AfterHook runs once the backup has ended, when its outcome matches When.
type AfterHook struct {
	Command        []string `json:"command"`
	TimeoutSeconds int      `json:"timeout_seconds"`
	When           string   `json:"when"`
}

// UnmarshalJSON applies the defaults: 300 s and abort.
func (h *BeforeHook) UnmarshalJSON(b []byte) error {
	type plain BeforeHook
	p := plain{TimeoutSeconds: DefaultHookTimeoutSeconds, OnFailure: HookAbort}
	if err := strictDecode(b, &p); err != nil {
		return err
	}
	*h = BeforeHook(p)
	return nil
}

// UnmarshalJSON applies the defaults: 300 s and always.
func (h *AfterHook) UnmarshalJSON(b []byte) error {
	type plain AfterHook
	p := plain{TimeoutSeconds: DefaultHookTimeoutSeconds, When: HookAlways}
	if err := strictDecode(b, &p); err != nil {
		return err
	}
	*h = AfterHook(p)
	return nil
}

// HasHooks reports whether the spec runs any command around its backup.
func (s *Spec) HasHooks() bool {
	return s.Hooks != nil && (s.Hooks.Before != nil || s.Hooks.After != nil)
}

// SameHooks reports whether a and b run the same hooks (nil and empty alike): changing hooks
// needs a privilege that editing the rest of a job does not.
func SameHooks(a, b *Spec) bool {
	norm := func(s *Spec) Hooks {
		if s == nil || s.Hooks == nil {
			return Hooks{}
		}
		return *s.Hooks
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func (s *Spec) validateHooks() *Error {
	h := s.Hooks
	if h == nil {
		return nil
	}
	const f = "spec.hooks"
	if h.Before != nil {
		if err := validateCommand(f+".before", h.Before.Command, h.Before.TimeoutSeconds); err != nil {
			return err
		}
		switch h.Before.OnFailure {
		case HookAbort, HookContinue:
		default:
			return errorf(f+".before.on_failure", "invalid_value", f+".before.on_failure must be abort or continue")
		}
	}
	if h.After != nil {
		if err := validateCommand(f+".after", h.After.Command, h.After.TimeoutSeconds); err != nil {
			return err
		}
		switch h.After.When {
		case HookAlways, HookSuccess, HookFailure:
		default:
			return errorf(f+".after.when", "invalid_value", f+".after.when must be always, success or failure")
		}
	}
	return nil
}

func validateCommand(f string, argv []string, timeout int) *Error {
	if len(argv) == 0 || strings.TrimSpace(argv[0]) == "" {
		return errorf(f+".command", "required", "%s.command needs a program: a list of arguments, the first one the program to run", f)
	}
	if len(argv) > MaxHookArgs {
		return errorf(f+".command", "out_of_range", "%s.command takes at most %d arguments", f, MaxHookArgs)
	}
	for _, a := range argv {
		if strings.ContainsRune(a, 0) {
			return errorf(f+".command", "invalid_format", "%s.command arguments must not contain NUL bytes", f)
		}
	}
	if timeout < 1 || timeout > MaxHookTimeoutSeconds {
		return errorf(f+".timeout_seconds", "out_of_range", "%s.timeout_seconds must be within 1..%d", f, MaxHookTimeoutSeconds)
	}
	return nil
}
