package operations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/pathguard"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
	"github.com/bastion-backup/bastion/storage"
)

// Destination types.
const (
	DestinationLocalFS = "local_fs"
	DestinationWebDAV  = "webdav"
)

// Destination is where a restore writes: a directory on the Hub or on an agent (local_fs), or a
// collection on a WebDAV server (webdav), written by the node NodeID with its own credential
// SecretName. A summary's webdav destination has only Type, NodeID and PrefixURL.
type Destination struct {
	Type      string `json:"type"`
	NodeID    string `json:"node_id"`
	Directory string `json:"directory,omitempty"`

	BaseURL    string `json:"base_url,omitempty"`
	SecretName string `json:"secret_name,omitempty"`
	Prefix     string `json:"prefix,omitempty"`
	// PrefixURL is BaseURL joined with Prefix (no credentials), set once validated.
	PrefixURL string `json:"prefix_url,omitempty"`
}

// summary is the destination as a restore's summary names it.
func (d Destination) summary() Destination {
	if d.Type == DestinationWebDAV {
		return Destination{Type: d.Type, NodeID: d.NodeID, PrefixURL: d.PrefixURL}
	}
	return d
}

// PrefixURLOf validates a WebDAV destination's base_url and prefix and joins them, or says
// which field is wrong with an *InputError.
func PrefixURLOf(baseURL, prefix string) (string, error) {
	if strings.TrimSpace(baseURL) == "" {
		return "", invalidDestination("destination.base_url", "required", "destination.base_url is required")
	}
	if _, err := webdav.JoinURL(baseURL, ""); err != nil {
		return "", invalidDestination("destination.base_url", "invalid_value", "destination.base_url: "+err.Error())
	}
	u, err := webdav.JoinURL(baseURL, prefix)
	if err != nil {
		return "", invalidDestination("destination.prefix", "invalid_value",
			"destination.prefix must be a relative path without empty, '.' or '..' segments, NUL or backslash")
	}
	return u, nil
}

// RestoreRequest is a restore as the API asks for it.
type RestoreRequest struct {
	Destination    Destination
	ConflictPolicy string             // overwrite (default) | skip | fail
	Selection      *restore.Selection // nil: everything
	// KeepSpecialBits restores setuid, setgid and sticky bits (stripped by default). The API
	// lets only an administrator set it.
	KeepSpecialBits bool
}

// ErrRunNotFound is returned for a run that does not exist.
var ErrRunNotFound = errors.New("run not found")

// InputError is a request refused before anything starts (an HTTP 400): Code is the API error
// code, Field the JSON field at fault, Reason a stable word.
type InputError struct {
	Code    string
	Field   string
	Reason  string
	Message string
}

func (e *InputError) Error() string { return e.Code + ": " + e.Message }

func invalidRun(reason, msg string) *InputError {
	return &InputError{Code: "invalid_run", Reason: reason, Message: msg}
}

func invalidDestination(field, reason, msg string) *InputError {
	return &InputError{Code: "invalid_destination", Field: field, Reason: reason, Message: msg}
}

// snapshot is what an operation about a run's snapshot needs to know.
type snapshot struct {
	run      storage.Run
	artifact storage.RunArtifact
	target   targets.RunTarget
}

// snapshotOf loads a run that can be restored: successful, with a snapshot still present.
func (s *Service) snapshotOf(ctx context.Context, runID string) (snapshot, error) {
	var snap snapshot
	run, err := s.db.Reader().GetRun(ctx, runID)
	if errors.Is(err, storage.ErrNotFound) {
		return snap, ErrRunNotFound
	}
	if err != nil {
		return snap, err
	}
	if run.Status != storage.RunSuccess {
		return snap, invalidRun("not_success", fmt.Sprintf("run %s is %s: only a successful run has a snapshot", runID, run.Status))
	}
	a, err := s.db.Reader().GetRunArtifact(ctx, run.JobID, run.ID)
	if errors.Is(err, storage.ErrNotFound) {
		return snap, invalidRun("no_snapshot", fmt.Sprintf("run %s has no snapshot in the index", runID))
	}
	if err != nil {
		return snap, err
	}
	switch a.Status {
	case storage.SnapshotDeleting, storage.SnapshotDeleted, storage.SnapshotMissing:
		return snap, invalidRun("snapshot_"+a.Status, fmt.Sprintf("the snapshot of run %s is %s", runID, a.Status))
	}
	rt, err := s.targetOf(a, run)
	if err != nil {
		return snap, err
	}
	return snapshot{run: run, artifact: a, target: rt}, nil
}

// validateRestore normalizes and checks a restore request.
func (s *Service) validateRestore(ctx context.Context, req *RestoreRequest) error {
	d := &req.Destination
	switch d.Type {
	case "", DestinationLocalFS:
		d.Type = DestinationLocalFS
	case DestinationWebDAV:
		if err := s.validateWebDAV(ctx, d); err != nil {
			return err
		}
	default:
		return invalidDestination("destination.type", "invalid_value", fmt.Sprintf("unknown destination type %q (want local_fs or webdav)", d.Type))
	}
	if d.NodeID == "" {
		d.NodeID = opener.HubNode
	}
	if d.NodeID != opener.HubNode && s.remote == nil {
		return invalidDestination("destination.node_id", "unsupported",
			fmt.Sprintf("restoring onto node %q is not available: this Hub restores to its own directories only", d.NodeID))
	}
	if d.Type == DestinationLocalFS {
		if err := s.validateLocal(d); err != nil {
			return err
		}
	}
	switch req.ConflictPolicy {
	case "":
		req.ConflictPolicy = restore.ConflictOverwrite
	case restore.ConflictOverwrite, restore.ConflictSkip, restore.ConflictFail:
	default:
		return &InputError{Code: "invalid_conflict_policy", Field: "conflict_policy", Reason: "invalid_value",
			Message: fmt.Sprintf("conflict_policy must be overwrite, skip or fail, got %q", req.ConflictPolicy)}
	}
	if req.Selection != nil {
		if err := req.Selection.Validate(); err != nil {
			return &InputError{Code: "invalid_selection", Field: "selection", Reason: "empty", Message: err.Error()}
		}
	}
	return nil
}

// validateLocal checks a local_fs destination.
func (s *Service) validateLocal(d *Destination) error {
	if strings.TrimSpace(d.Directory) == "" {
		return invalidDestination("destination.directory", "required", "destination.directory is required")
	}
	if strings.ContainsRune(d.Directory, 0) {
		return invalidDestination("destination.directory", "invalid_value", "destination.directory contains a NUL byte")
	}
	if d.NodeID == opener.HubNode {
		if !filepath.IsAbs(d.Directory) {
			return invalidDestination("destination.directory", "not_absolute",
				fmt.Sprintf("destination.directory must be an absolute path, got %q", d.Directory))
		}
		d.Directory = filepath.Clean(d.Directory)
		if fi, err := os.Stat(d.Directory); err == nil && !fi.IsDir() {
			return invalidDestination("destination.directory", "not_directory",
				fmt.Sprintf("%s exists and is not a directory", d.Directory))
		}
		// Symlinks are resolved (also of a destination not created yet): a link to the data
		// directory must not get a restore written over the database or master.key, and neither
		// may a restore into a parent of it (/, /var/lib) whose snapshot holds its path.
		overlaps, err := pathguard.Overlaps(d.Directory, s.dataDir)
		if err != nil {
			return invalidDestination("destination.directory", "unresolvable",
				fmt.Sprintf("destination.directory could not be checked: %v", err))
		}
		if overlaps {
			return invalidDestination("destination.directory", "inside_data_dir",
				"the destination is inside the Hub's data directory, or contains it (symlinks resolved); choose another directory")
		}
	}
	return nil
}

// validateWebDAV checks a webdav destination. On the Hub the credential must exist and be bound
// to the server's origin (refused before anything is sent); an agent's credential is checked by
// Remote.Check.
func (s *Service) validateWebDAV(ctx context.Context, d *Destination) error {
	u, err := PrefixURLOf(d.BaseURL, d.Prefix)
	if err != nil {
		return err
	}
	d.PrefixURL = u
	d.SecretName = strings.TrimSpace(d.SecretName)
	if d.SecretName == "" {
		return invalidDestination("destination.secret_name", "required", "destination.secret_name is required")
	}
	d.Directory = ""
	if d.NodeID != "" && d.NodeID != opener.HubNode {
		return nil
	}
	if _, err := s.openWebDAV(ctx, *d); err != nil {
		var te *targets.Error
		switch {
		case errors.As(err, &te) && (te.Code == secrets.CodeOriginMismatch || te.Code == secrets.CodeOriginUnbound):
			return &InputError{Code: te.Code, Field: "destination.base_url", Reason: "origin_not_allowed", Message: te.Hint}
		case errors.As(err, &te) && te.Code == "webdav_secret_missing":
			return &InputError{Code: "missing_webdav_secret", Field: "destination.secret_name", Reason: "missing_secret",
				Message: fmt.Sprintf("the Hub has no WebDAV credential named %q; create it (Settings → Secrets)", d.SecretName)}
		}
		return err
	}
	return nil
}

// openWebDAV opens the Hub's WebDAV destination d (validated) with the Hub's credential, which
// the opener refuses to send anywhere but the origins it is bound to. Nothing is sent.
func (s *Service) openWebDAV(ctx context.Context, d Destination) (*webdav.Tree, error) {
	tgt, err := s.opener.Open(ctx, targets.RunTarget{NodeID: opener.HubNode, Target: webdav.Redact(d.PrefixURL, d.SecretName)})
	if err != nil {
		return nil, err
	}
	tree, ok := webdav.TreeOf(tgt)
	if !ok {
		return nil, fmt.Errorf("open WebDAV destination: the opener returned a %s target", tgt.Type())
	}
	return tree, nil
}

// RestoreSummary is the summary of a restore operation.
type RestoreSummary struct {
	Destination    Destination        `json:"destination"`
	ConflictPolicy string             `json:"conflict_policy"`
	Selection      *restore.Selection `json:"selection,omitempty"`
	// KeepSpecialBits is shown only when set, as a reminder that set-id bits were restored.
	KeepSpecialBits bool `json:"keep_special_bits,omitempty"`
	*restore.Result
}

// StartRestore checks a restore of a run's snapshot and starts it. Errors: ErrRunNotFound,
// *InputError; the operation itself reports its failure in its row and events.
func (s *Service) StartRestore(ctx context.Context, runID string, req RestoreRequest, userID int64) (storage.Operation, error) {
	snap, err := s.snapshotOf(ctx, runID)
	if err != nil {
		return storage.Operation{}, err
	}
	if err := s.validateRestore(ctx, &req); err != nil {
		return storage.Operation{}, err
	}
	op := s.newOperation(storage.OperationRestore, req.Destination.NodeID, snap.run.ID)
	fields := map[string]any{"run_id": runID, "destination": req.Destination, "conflict_policy": req.ConflictPolicy}
	if req.Selection != nil {
		fields["selection"] = req.Selection
	}
	if req.KeepSpecialBits {
		fields["keep_special_bits"] = true
	}
	if node := req.Destination.NodeID; node != opener.HubNode {
		task := RestoreTask{
			OperationID: op.ID, JobID: snap.run.JobID, RunID: snap.run.ID, Target: snap.target,
			Destination: req.Destination, Conflict: req.ConflictPolicy, Selection: req.Selection,
			KeepSpecialBits: req.KeepSpecialBits,
		}
		return s.startRemote(ctx, op, fields,
			func(ctx context.Context) error { return s.remote.Check(ctx, node, task) },
			func(ctx context.Context) error { return s.remote.Start(ctx, node, task) })
	}
	return s.launch(ctx, op, fields, func(ctx context.Context, o *opRun) (any, error) {
		sum := &RestoreSummary{Destination: req.Destination.summary(), ConflictPolicy: req.ConflictPolicy, Selection: req.Selection,
			KeepSpecialBits: req.KeepSpecialBits}
		var sink restore.Sink
		if req.Destination.Type == DestinationWebDAV {
			// Opened again: the credential may have changed while the restore was queued.
			tree, err := s.openWebDAV(ctx, req.Destination)
			if err != nil {
				return sum, err
			}
			sink = restore.WebDAV(tree, op.ID)
		}
		tgt, err := s.opener.Open(ctx, snap.target)
		if err != nil {
			return sum, err
		}
		res, err := restore.Restore(ctx, restore.Request{
			JobID: snap.run.JobID, RunID: snap.run.ID, Target: tgt, Destination: req.Destination.Directory, Sink: sink,
			StagingDir: filepath.Join(o.dir, "staging"), Conflict: req.ConflictPolicy, Selection: req.Selection,
			KeepSpecialBits: req.KeepSpecialBits, ProtectedDir: s.dataDir, Keys: s.keys, Events: o, Progress: o.rep, Logger: o.log,
		})
		sum.Result = &res
		return sum, err
	})
}

// VerifyError fails a verify whose files did not match the index (Result.OK false), on the Hub
// or on an agent.
type VerifyError struct{ Result restore.VerifyResult }

func (e *VerifyError) Error() string {
	res := e.Result
	msg := fmt.Sprintf("%s: %d of %d files failed verification", CodeVerifyFailed, res.FilesFailed, res.FilesTotal)
	if res.SQLiteOK != nil && !*res.SQLiteOK {
		msg += "; the database failed its integrity check"
	}
	if len(res.Errors) > 0 {
		msg += " (first: " + res.Errors[0] + ")"
	}
	return msg
}

// StartVerify starts a restore drill of a run's snapshot on the Hub: a full restore into a
// scratch directory, every file checked against the index, and an integrity check of a SQLite
// snapshot. A damaged part fails the operation naming the part. A snapshot in an agent's
// directory is verified on that agent (Remote implementing RemoteVerifier): the operation's
// node is the agent, and it ends when the agent's result arrives.
func (s *Service) StartVerify(ctx context.Context, runID string, userID int64) (storage.Operation, error) {
	snap, err := s.snapshotOf(ctx, runID)
	if err != nil {
		return storage.Operation{}, err
	}
	dbName := sqliteSnapshotName(snap.run.SummaryJSON)
	if rv, ok := s.remote.(RemoteVerifier); ok && onAgentOnly(snap.target) {
		node := snap.target.NodeID
		op := s.newOperation(storage.OperationVerify, node, snap.run.ID)
		task := VerifyTask{OperationID: op.ID, JobID: snap.run.JobID, RunID: snap.run.ID, Target: snap.target, SQLiteSnapshot: dbName}
		return s.startRemote(ctx, op, map[string]any{"run_id": runID, "node_id": node},
			func(ctx context.Context) error { return rv.CheckVerify(ctx, node, task) },
			func(ctx context.Context) error { return rv.StartVerify(ctx, node, task) })
	}
	op := s.newOperation(storage.OperationVerify, opener.HubNode, snap.run.ID)
	return s.launch(ctx, op, map[string]any{"run_id": runID}, func(ctx context.Context, o *opRun) (any, error) {
		tgt, err := s.opener.Open(ctx, snap.target)
		if err != nil {
			return nil, err
		}
		res, err := restore.Verify(ctx, restore.VerifyRequest{
			JobID: snap.run.JobID, RunID: snap.run.ID, Target: tgt, ScratchDir: filepath.Join(o.dir, "verify"),
			Keys: s.keys, SQLiteSnapshot: dbName, Events: o, Progress: o.rep,
		})
		if err != nil {
			return res, err
		}
		if !res.OK {
			return res, &VerifyError{res}
		}
		return res, nil
	})
}

// sqliteSnapshotName finds the database to integrity-check in a run summary: a sqlite job's
// snapshot, or Vaultwarden's db.sqlite3.
func sqliteSnapshotName(summaryJSON *string) string {
	if summaryJSON == nil {
		return ""
	}
	var sum backup.Summary
	if err := json.Unmarshal([]byte(*summaryJSON), &sum); err != nil {
		return ""
	}
	switch {
	case sum.SQLite != nil:
		return sum.SQLite.SnapshotName
	case sum.Vaultwarden != nil:
		if sum.Vaultwarden.DB != "" {
			return sum.Vaultwarden.DB
		}
		return backup.VaultwardenDBName
	}
	return ""
}

func (s *Service) newOperation(kind, node, runID string) storage.Operation {
	now := s.clock.Now().Unix()
	subject := SubjectRun
	return storage.Operation{ID: uuid.NewString(), Kind: kind, Status: storage.OperationRunning, NodeID: node,
		StartedAt: now, SubjectKind: &subject, SubjectID: &runID, CreatedAt: now, UpdatedAt: now}
}

// startRemote checks an operation (restore or verify) on an agent, stores it and hands it to the
// agent. The operation then stays running until FinishRemote; a failure to hand it over fails it
// at once.
func (s *Service) startRemote(ctx context.Context, op storage.Operation, fields map[string]any,
	check, start func(ctx context.Context) error) (storage.Operation, error) {
	if err := check(ctx); err != nil {
		return storage.Operation{}, err
	}
	if s.base.Err() != nil {
		return op, errShutdown
	}
	if err := s.insert(ctx, op, fields); err != nil {
		return op, err
	}
	log := s.log.With().Str("operation_id", op.ID).Str("node_id", op.NodeID).Str("kind", op.Kind).Logger()
	if err := start(ctx); err != nil {
		log.Warn().Err(err).Msg("could not hand the operation to the agent")
		code := errorCode(err)
		final, ferr := s.finish(context.WithoutCancel(ctx), op.ID, storage.OperationFailed, nil, code+": "+err.Error(), code, nil)
		if ferr != nil {
			return op, ferr
		}
		return final, nil
	}
	log.Info().Msg("operation handed to the agent")
	return op, nil
}

// RemoteEvent records an event the agent reported for an operation it runs.
func (s *Service) RemoteEvent(ctx context.Context, opID, level, kind, message string, fields json.RawMessage) error {
	e := storage.OperationEvent{TS: s.clock.Now().Unix(), Level: level, Kind: kind, Message: message}
	if e.Level == "" {
		e.Level = "info"
	}
	if len(fields) > 0 && string(fields) != "null" && json.Valid(fields) {
		e.FieldsJSON = ptr(string(fields))
	}
	return s.db.Write(ctx, func(q storage.Q) error { return q.AppendOperationEvent(ctx, opID, e) })
}

// RemoteProgress stores the latest progress an agent reported for an operation it runs.
func (s *Service) RemoteProgress(ctx context.Context, opID string, progressJSON []byte) error {
	return s.db.Writer().SetOperationProgress(ctx, opID, string(progressJSON), s.clock.Now().Unix())
}

// RemoteOutcome is how an agent says an operation ended.
type RemoteOutcome struct {
	Status  string          // storage.OperationSuccess, OperationFailed or OperationCanceled
	Summary json.RawMessage // stored as the operation's summary
	Code    string          // for failures: a stable error code
	Message string          // for failures
}

// FinishRemote ends an operation that runs on an agent. The first outcome wins (a repeat changes
// nothing and reports false), and a requested cancel wins over anything but success.
func (s *Service) FinishRemote(ctx context.Context, opID string, out RemoteOutcome) (bool, error) {
	var summary *string
	if len(out.Summary) > 0 && string(out.Summary) != "null" && json.Valid(out.Summary) {
		summary = ptr(string(out.Summary))
	}
	msg, code := "", ""
	switch out.Status {
	case storage.OperationSuccess:
	case storage.OperationCanceled:
		code, msg = CodeCanceled, CodeCanceled+": the operation was canceled"
	default:
		out.Status = storage.OperationFailed
		code = out.Code
		if code == "" {
			code = "agent_failed"
		}
		msg = code + ": " + out.Message
		if strings.HasPrefix(out.Message, code+": ") {
			msg = out.Message // the agent's message already leads with its code
		}
	}
	op, err := s.finish(ctx, opID, out.Status, summary, msg, code, nil)
	if err != nil {
		return false, err
	}
	applied := op.ID != ""
	if applied {
		s.log.Info().Str("operation_id", opID).Str("node_id", op.NodeID).Str("status", op.Status).Msg("operation finished on its agent")
	}
	return applied, nil
}
