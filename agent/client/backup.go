package client

import (
	"context"
	"encoding/json"
	"fmt"

	"filippo.io/age"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/backupexec"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/storage"
)

// BackupExecutor runs backup tasks with the same pipeline as the Hub (engine/backupexec), staging
// under <data-dir>/runs/<run_id>/. Targets are opened on this machine: a local_dir target is a
// directory here.
type BackupExecutor struct {
	dataDir string
	opener  *opener.Opener
	log     zerolog.Logger
	// AllowHooks lets tasks run their job's hooks (`bastion agent --allow-hooks`): commands the
	// Hub's admin chose, run as this agent's user. Without it a job with hooks fails its run.
	AllowHooks bool
}

// NewBackupExecutor builds the agent's executor. creds reads WebDAV credentials (nil: none, so
// WebDAV targets fail with a clear error).
func NewBackupExecutor(dataDir string, creds opener.Secrets, log zerolog.Logger) *BackupExecutor {
	if creds == nil {
		creds = noSecrets{}
	}
	op := opener.New(opener.Config{Secrets: creds, Logger: log})
	return &BackupExecutor{dataDir: dataDir, opener: op, log: log}
}

// taskKey is the one age key an encrypted task may use: the recipient the Hub sent with it. The
// agent keeps no key store, so it can encrypt but never create a key.
type taskKey struct {
	name      string
	recipient *string
}

func (k taskKey) Recipient(_ context.Context, keyName string) (age.Recipient, error) {
	if k.recipient == nil || keyName != k.name {
		return nil, fmt.Errorf("the hub sent no public key for age key %q with this task", keyName)
	}
	r, err := age.ParseX25519Recipient(*k.recipient)
	if err != nil {
		return nil, fmt.Errorf("the public key the hub sent for age key %q is not valid: %w", keyName, err)
	}
	return r, nil
}

type noSecrets struct{}

func (noSecrets) Get(_ context.Context, node, kind, name string) ([]byte, error) {
	return nil, fmt.Errorf("secret %s/%s is not available on this agent: %w", kind, name, secrets.ErrNotFound)
}

func (noSecrets) AllowedOrigins(_ context.Context, node, kind, name string) ([]string, error) {
	return nil, fmt.Errorf("secret %s/%s is not available on this agent: %w", kind, name, secrets.ErrNotFound)
}

// Execute runs the task's backup and turns the outcome into a task result. A failure's code goes
// to summary.error_code, as the Hub reads it.
func (b *BackupExecutor) Execute(ctx context.Context, t *protocol.Task, emit func(*protocol.RunEvent)) protocol.TaskResult {
	spec, err := jobspec.ParseAndValidate(t.Task.Spec)
	if err != nil {
		return failedResult(runs.CodeInvalidSpec, "the job spec is invalid: "+err.Error(), nil)
	}
	req := runs.ExecRequest{
		Run:      storage.Run{ID: t.Task.RunID, JobID: t.Task.JobID, Status: storage.RunRunning, StartedAt: t.Task.StartedAt},
		Job:      storage.Job{ID: t.Task.JobID, Name: t.Task.JobName, SpecJSON: string(t.Task.Spec)},
		Spec:     spec,
		Events:   eventEmitter{runID: t.Task.RunID, emit: emit},
		Progress: progressEmitter{runID: t.Task.RunID, emit: emit},
	}
	exec := backupexec.New(backupexec.Config{DataDir: b.dataDir, Opener: b.opener, Clock: clock.Real{}, Logger: b.log, AllowHooks: b.AllowHooks,
		Keys: taskKey{name: spec.Pipeline.Encryption.KeyName, recipient: t.Task.AgeRecipient}})
	out, err := exec.Execute(ctx, req)
	if err != nil {
		return failedResult(runs.CodeRunFailed, err.Error(), nil)
	}
	switch out.Status {
	case storage.RunSuccess:
		return protocol.TaskResult{Status: protocol.StatusSuccess, Summary: out.Summary}
	case storage.RunCanceled:
		return canceledResult()
	}
	code, msg := runs.CodeRunFailed, "the backup failed"
	if out.Error != nil {
		code, msg = out.Error.Code, out.Error.Message
	}
	return failedResult(code, msg, out.Summary)
}

// failedResult puts code into the summary (keeping the summary's other fields).
func failedResult(code, msg string, summary json.RawMessage) protocol.TaskResult {
	fields := map[string]any{}
	_ = json.Unmarshal(summary, &fields)
	fields["error_code"] = code
	b, _ := json.Marshal(fields)
	return protocol.TaskResult{Status: protocol.StatusFailed, Summary: b, Error: &msg}
}

type eventEmitter struct {
	runID string
	emit  func(*protocol.RunEvent)
}

func (e eventEmitter) Append(_ context.Context, events ...runs.Event) error {
	for _, ev := range events {
		var fields json.RawMessage
		if ev.Fields != nil {
			b, err := json.Marshal(ev.Fields)
			if err != nil {
				return fmt.Errorf("encode fields of event %s: %w", ev.Kind, err)
			}
			fields = b
		}
		level := ev.Level
		if level == "" {
			level = "info"
		}
		e.emit(&protocol.RunEvent{RunID: e.runID, Level: level, Kind: ev.Kind, Message: ev.Message, Fields: fields})
	}
	return nil
}

type progressEmitter struct {
	runID string
	emit  func(*protocol.RunEvent)
}

func (p progressEmitter) SetProgress(_ context.Context, v []byte) error {
	var s struct {
		Stage string `json:"stage"`
	}
	_ = json.Unmarshal(v, &s)
	p.emit(&protocol.RunEvent{RunID: p.runID, Level: "info", Kind: progressKind, Message: s.Stage, Fields: append(json.RawMessage(nil), v...)})
	return nil
}
