package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/fsrpc"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/pathguard"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
)

// RestoreExecutor runs restore tasks with the Hub's restore engine (engine/restore). The snapshot
// is read where it lives, from this machine: a local_dir target is a directory here, a WebDAV
// target is read with this agent's credential of that name (from its secrets snapshot). Parts
// are staged under <data-dir>/operations/<op_id>/, removed afterwards. Encrypted snapshots are
// opened with the age identity the Hub copied to this agent just before the task.
//
// It also verifies snapshots (Verify: a restore drill into <data-dir>/operations/<op_id>/,
// removed afterwards) and lists their entries for the Hub's restore picker (Entries, with the
// index built once into <data-dir>/cache/entries/<run_id>/, see operations.IndexCache).
type RestoreExecutor struct {
	dataDir string
	opener  *opener.Opener
	keys    restore.IdentityProvider
	clock   clock.Clock
	log     zerolog.Logger
	entries *operations.IndexCache
}

var (
	_ Restorer      = (*RestoreExecutor)(nil)
	_ Verifier      = (*RestoreExecutor)(nil)
	_ EntriesLister = (*RestoreExecutor)(nil)
)

// entriesCacheTTL: the agent drops cached indexes not read for this long when it starts.
const entriesCacheTTL = 7 * 24 * time.Hour

// entriesTimeout bounds one entries_list answer (the Hub waits as long).
const entriesTimeout = 30 * time.Second

func entriesCacheDir(dataDir string) string { return filepath.Join(dataDir, "cache", "entries") }

// RestoreOption tunes NewRestoreExecutor.
type RestoreOption func(*restoreOptions)

type restoreOptions struct{ entriesCacheMaxBytes int64 }

// WithEntriesCacheMaxBytes bounds the restore picker's index cache under
// <data-dir>/cache/entries (default operations.DefaultEntriesCacheMaxBytes).
func WithEntriesCacheMaxBytes(n int64) RestoreOption {
	return func(o *restoreOptions) { o.entriesCacheMaxBytes = n }
}

// NewRestoreExecutor builds the agent's restore executor. m gives WebDAV credentials and age
// identities (nil: none).
func NewRestoreExecutor(dataDir string, m *Managed, log zerolog.Logger, opts ...RestoreOption) *RestoreExecutor {
	var o restoreOptions
	for _, opt := range opts {
		opt(&o)
	}
	e := &RestoreExecutor{dataDir: dataDir, clock: clock.Real{}, log: log.With().Str("component", "agent-restore").Logger(),
		entries: operations.NewIndexCache(entriesCacheDir(dataDir), o.entriesCacheMaxBytes)}
	var creds opener.Secrets = noSecrets{}
	if m != nil {
		creds, e.keys = m, m
	}
	e.opener = opener.New(opener.Config{Secrets: creds, Logger: log})
	return e
}

// Restore codes of refusals the agent makes itself.
const (
	CodeUnsupportedDestination = "unsupported_destination"
	CodeInvalidDestination     = "invalid_destination"
	CodeSnapshotUnknown        = "snapshot_location_missing"
)

// Restore runs one restore and reports how it ended. The summary has the shape the Hub stores
// for its own restores (destination, conflict_policy, selection, counts); a failure adds
// error_code.
func (e *RestoreExecutor) Restore(ctx context.Context, t *protocol.RestoreTask, emit func(*protocol.OperationEvent)) protocol.OperationResult {
	req := t.Task
	opID := t.TaskID
	if opID == "" {
		opID = req.OpID
	}
	log := e.log.With().Str("operation_id", opID).Str("run_id", req.RunID).Logger()
	sum := &operations.RestoreSummary{ConflictPolicy: req.ConflictPolicy, KeepSpecialBits: req.KeepSpecialBits}
	if req.Selection != nil {
		sum.Selection = &restore.Selection{Files: req.Selection.Files, Dirs: req.Selection.Dirs}
	}
	var sink restore.Sink
	dir := req.DestinationDir
	switch d := req.Destination; {
	case d != nil && d.Type == operations.DestinationWebDAV:
		tree, prefixURL, fail := e.webdavDestination(ctx, d)
		if fail != nil {
			return *fail
		}
		sink = restore.WebDAV(tree, opID)
		sum.Destination = operations.Destination{Type: operations.DestinationWebDAV, PrefixURL: prefixURL}
	case d != nil && d.Type != "" && d.Type != operations.DestinationLocalFS:
		return opFailed(CodeUnsupportedDestination, fmt.Sprintf("restoring to %q is not supported on this agent; restore to a directory or WebDAV", d.Type), nil)
	default:
		if d != nil {
			dir = d.Directory
		}
		if dir == "" || !filepath.IsAbs(dir) {
			return opFailed(CodeInvalidDestination, fmt.Sprintf("the destination directory must be an absolute path, got %q", dir), nil)
		}
		// Symlinks resolved: a link to the agent's data directory must not get a restore written over
		// its key and managed configuration, and neither may a restore into a parent of it.
		if overlaps, err := pathguard.Overlaps(dir, e.dataDir); err != nil || overlaps {
			return opFailed(CodeInvalidDestination, "the destination is inside the agent's data directory, or contains it (symlinks resolved); choose another directory", nil)
		}
		sum.Destination = operations.Destination{Type: operations.DestinationLocalFS, Directory: filepath.Clean(dir)}
	}
	if req.Snapshot == nil || req.JobID == "" {
		return opFailed(CodeSnapshotUnknown, "the Hub did not say where the snapshot lives (a Hub too old for agent restores?)", nil)
	}
	tgt, err := e.open(ctx, req.Snapshot)
	if err != nil {
		return e.outcome(ctx, sum, err, log)
	}
	opDir := filepath.Join(e.dataDir, "operations", opID)
	defer func() {
		if err := os.RemoveAll(opDir); err != nil {
			log.Warn().Err(err).Msg("remove operation directory")
		}
	}()
	rep := progress.NewReporter(progress.KindRestore, e.clock, func(s progress.Snapshot) {
		if b, err := json.Marshal(s); err == nil {
			emit(&protocol.OperationEvent{Level: "info", Kind: progressKind, Message: s.Stage, Fields: b})
		}
	})
	res, err := restore.Restore(ctx, restore.Request{
		JobID: req.JobID, RunID: req.RunID, Target: tgt, Destination: sum.Destination.Directory, Sink: sink,
		StagingDir: filepath.Join(opDir, "staging"), Conflict: req.ConflictPolicy, Selection: sum.Selection,
		KeepSpecialBits: req.KeepSpecialBits, ProtectedDir: e.dataDir, Keys: e.keys, Events: opEvents{emit}, Progress: rep, Logger: log,
	})
	rep.Close()
	sum.Result = &res
	return e.outcome(ctx, sum, err, log)
}

// webdavDestination opens a WebDAV restore destination with this agent's own credential of that
// name, which the opener sends only to the origins the Hub bound it to. Nothing is sent here.
func (e *RestoreExecutor) webdavDestination(ctx context.Context, d *protocol.RestoreDestination) (*webdav.Tree, string, *protocol.OperationResult) {
	fail := func(code, msg string) (*webdav.Tree, string, *protocol.OperationResult) {
		r := opFailed(code, msg, nil)
		return nil, "", &r
	}
	prefixURL, err := operations.PrefixURLOf(d.BaseURL, d.Prefix)
	if err != nil {
		var ie *operations.InputError
		if errors.As(err, &ie) {
			return fail(CodeInvalidDestination, ie.Message)
		}
		return fail(CodeInvalidDestination, "the WebDAV destination is not usable")
	}
	if strings.TrimSpace(d.SecretName) == "" {
		return fail(fsrpc.CodeMissingWebDAVSecret, "the restore names no WebDAV credential (secret_name)")
	}
	tgt, err := e.opener.Open(ctx, targets.RunTarget{NodeID: opener.HubNode, Target: webdav.Redact(prefixURL, d.SecretName)})
	var te *targets.Error
	switch {
	case errors.Is(err, secrets.ErrNotFound) || (errors.As(err, &te) && te.Code == "webdav_secret_missing"):
		return fail(fsrpc.CodeMissingWebDAVSecret, fmt.Sprintf("this agent has no WebDAV credential named %q; "+
			"create it for this agent (Agents → the agent → WebDAV credentials) and restore again", d.SecretName))
	case errors.As(err, &te):
		return fail(te.Code, "open the WebDAV destination: "+te.Error())
	case err != nil:
		return fail("webdav_destination_invalid", "open the WebDAV destination: "+err.Error())
	}
	tree, ok := webdav.TreeOf(tgt)
	if !ok {
		return fail("webdav_destination_invalid", "the WebDAV destination could not be opened")
	}
	return tree, prefixURL, nil
}

// open opens the target a snapshot lives on, from this machine: the Hub's description of it is
// read as if this agent were the Hub (its directories, its WebDAV credentials).
func (e *RestoreExecutor) open(ctx context.Context, snap *protocol.SnapshotTarget) (targets.Target, error) {
	var red targets.Redacted
	if err := red.UnmarshalJSON(*snap); err != nil {
		return nil, &targets.Error{Kind: targets.KindConfig, Code: "invalid_target_snapshot", Op: "read snapshot target", Err: err}
	}
	return e.opener.Open(ctx, targets.RunTarget{NodeID: opener.HubNode, Target: red})
}

// Verify runs one verify: the snapshot restored into scratch space under
// <data-dir>/operations/<op_id>/ (removed afterwards), every file checked against the index, and
// a SQLite snapshot integrity-checked. The summary is the verify result, as the Hub stores its
// own; a failure adds error_code (verify_failed when files do not match, the restore engine's
// code, such as part_invalid naming the part, otherwise).
func (e *RestoreExecutor) Verify(ctx context.Context, t *protocol.VerifyTask, emit func(*protocol.OperationEvent)) protocol.OperationResult {
	req := t.Task
	opID := t.TaskID
	if opID == "" {
		opID = req.OpID
	}
	log := e.log.With().Str("operation_id", opID).Str("run_id", req.RunID).Logger()
	if req.Snapshot == nil || req.JobID == "" {
		return opFailed(CodeSnapshotUnknown, "the Hub did not say where the snapshot lives", nil)
	}
	tgt, err := e.open(ctx, req.Snapshot)
	if err != nil {
		return e.verifyOutcome(ctx, nil, err, log)
	}
	opDir := filepath.Join(e.dataDir, "operations", opID)
	defer func() {
		if err := os.RemoveAll(opDir); err != nil {
			log.Warn().Err(err).Msg("remove operation directory")
		}
	}()
	rep := progress.NewReporter(progress.KindVerify, e.clock, func(s progress.Snapshot) {
		if b, err := json.Marshal(s); err == nil {
			emit(&protocol.OperationEvent{Level: "info", Kind: progressKind, Message: s.Stage, Fields: b})
		}
	})
	res, err := restore.Verify(ctx, restore.VerifyRequest{
		JobID: req.JobID, RunID: req.RunID, Target: tgt, ScratchDir: filepath.Join(opDir, "verify"),
		Keys: e.keys, SQLiteSnapshot: req.SQLiteSnapshot, Events: opEvents{emit}, Progress: rep,
		SampleFiles: req.SampleFiles,
	})
	rep.Close()
	if err == nil && !res.OK {
		err = &operations.VerifyError{Result: res}
	}
	return e.verifyOutcome(ctx, &res, err, log)
}

func (e *RestoreExecutor) verifyOutcome(ctx context.Context, res *restore.VerifyResult, err error, log zerolog.Logger) protocol.OperationResult {
	var b json.RawMessage
	if res != nil {
		b, _ = json.Marshal(res)
	}
	switch {
	case err == nil:
		return protocol.OperationResult{Status: protocol.StatusSuccess, Summary: b}
	case ctx.Err() != nil:
		return canceledOpResult()
	}
	code := operations.ErrorCode(err)
	log.Warn().Err(err).Str("code", code).Msg("verify failed")
	return opFailed(code, err.Error(), b)
}

// Entries answers entries_list from the snapshot's browse index in the entries cache (built
// on first use).
func (e *RestoreExecutor) Entries(ctx context.Context, m *protocol.EntriesList) *protocol.EntriesListResult {
	ctx, cancel := context.WithTimeout(ctx, entriesTimeout)
	defer cancel()
	res := &protocol.EntriesListResult{RequestID: m.RequestID, Entries: []protocol.EntryChild{}}
	fail := func(code, kind, msg string) *protocol.EntriesListResult {
		res.ErrorCode, res.Error = &code, &msg
		if kind != "" {
			res.ErrorKind = &kind
		}
		return res
	}
	if m.Snapshot == nil || m.JobID == "" || m.RunID == "" {
		return fail(CodeSnapshotUnknown, "", "the Hub did not say which snapshot to list")
	}
	tgt, err := e.open(ctx, m.Snapshot)
	if err == nil {
		var page restore.Page
		page, err = e.entries.List(ctx, tgt, targets.RunRef{JobID: m.JobID, RunID: m.RunID}, restore.ListOptions{
			Prefix: m.Prefix, Cursor: m.Cursor, Limit: m.Limit, Q: m.Q, Kind: m.Kind,
			HideDotfiles: m.HideDotfiles, FilesFirst: m.FilesFirst, MinSize: m.MinSize, MaxSize: m.MaxSize,
		})
		if err == nil {
			res.Prefix, res.Total = page.Prefix, int64(page.Total)
			for _, c := range page.Entries {
				res.Entries = append(res.Entries, protocol.EntryChild{Name: c.Name, Path: c.Path, Kind: c.Kind, Size: c.Size})
			}
			if page.NextCursor != "" {
				res.NextCursor = &page.NextCursor
			}
			return res
		}
	}
	var te *targets.Error
	switch {
	case errors.Is(err, operations.ErrInvalidCursor):
		return fail(protocol.EntriesInvalidCursor, "", "cursor is not one this agent handed out")
	case errors.As(err, &te):
		return fail(te.Code, te.Kind, err.Error())
	case errors.Is(err, targets.ErrNotExist):
		return fail("snapshot_files_missing", targets.KindNotFound, err.Error())
	}
	e.log.Warn().Err(err).Str("run_id", m.RunID).Msg("list snapshot entries")
	return fail("entries_failed", "", err.Error())
}

func (e *RestoreExecutor) outcome(ctx context.Context, sum *operations.RestoreSummary, err error, log zerolog.Logger) protocol.OperationResult {
	b, jerr := json.Marshal(sum)
	if jerr != nil {
		b = nil
	}
	switch {
	case err == nil:
		return protocol.OperationResult{Status: protocol.StatusSuccess, Summary: b}
	case ctx.Err() != nil:
		return canceledOpResult()
	}
	code := "restore_failed"
	var re *restore.Error
	var te *targets.Error
	switch {
	case errors.As(err, &re):
		code = re.Code
	case errors.As(err, &te):
		code = te.Code
	}
	log.Warn().Err(err).Str("code", code).Msg("restore failed")
	return opFailed(code, err.Error(), b)
}

// opFailed puts code into the summary, as the Hub reads it.
func opFailed(code, msg string, summary json.RawMessage) protocol.OperationResult {
	fields := map[string]any{}
	_ = json.Unmarshal(summary, &fields)
	fields["error_code"] = code
	b, _ := json.Marshal(fields)
	return protocol.OperationResult{Status: protocol.StatusFailed, Summary: b, Error: &msg}
}

// opEvents turns the restore engine's events into operation_event messages.
type opEvents struct {
	emit func(*protocol.OperationEvent)
}

func (o opEvents) Emit(level, kind, message string, fields map[string]any) {
	var raw json.RawMessage
	if fields != nil {
		if b, err := json.Marshal(fields); err == nil {
			raw = b
		}
	}
	if level == "" {
		level = "info"
	}
	o.emit(&protocol.OperationEvent{Level: level, Kind: kind, Message: message, Fields: raw})
}
