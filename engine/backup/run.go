// Package backup runs one backup of a job: it reads the source (a filesystem tree, a live
// SQLite database, a Vaultwarden data directory), packs it as archive_v1 (tar → zstd →
// optional age → parts of part_size_bytes, BLAKE3 each), uploads the parts while packing
// (rolling upload, at most ~3 parts on local staging), then stores entries.jsonl.zst,
// manifest.json and, last, complete.json. A raw_tree_v1 job instead copies each file to
// data/<archive path> (rawtree.go). See docs/backup-format.md.
package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"
	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/progress"
	"github.com/bastion-backup/bastion/engine/targets"
)

// KeyProvider gives the age recipient of a key name; creating the key on first use is the
// implementation's business.
type KeyProvider interface {
	Recipient(ctx context.Context, keyName string) (age.Recipient, error)
}

// EventSink receives run events (backup.md §13). level is info, warn or error.
type EventSink interface {
	Emit(level, kind, message string, fields map[string]any)
}

// Event levels.
const (
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// Request is one backup run.
type Request struct {
	JobID, RunID string
	StartedAt    time.Time
	Spec         *jobspec.Spec
	Target       targets.Target
	// StagingDir is the run's private scratch directory (<data_dir>/runs/<run_id>/staging).
	// It is created, and removed when Run returns, whatever the outcome.
	StagingDir string
	Keys       KeyProvider        // needed only for age encryption
	Events     EventSink          // optional
	Progress   *progress.Reporter // optional; Run does not Close it
	Logger     zerolog.Logger
	Clock      clock.Clock // optional; the wall clock by default (manifest ended_at)

	// sequentialReads turns read-ahead off, for tests whose fault hooks change one file while
	// another is archived and so need files read strictly one after another.
	sequentialReads bool
}

// Summary is the run summary JSON of backup.md §13.
type Summary struct {
	Target         SummaryTarget `json:"target"`
	ArtifactFormat string        `json:"artifact_format"`
	// EncryptionKey (Go extension) is the age key the snapshot is encrypted for, as its manifest
	// says: the Hub reads it from the run's record to share that key for a restore on an agent.
	EncryptionKey string              `json:"encryption_key,omitempty"`
	EntriesCount  int64               `json:"entries_count"`
	Parts         int                 `json:"parts"`
	Metrics       Metrics             `json:"metrics"`
	Filesystem    *FilesystemSummary  `json:"filesystem,omitempty"`
	SQLite        *SQLiteSummary      `json:"sqlite,omitempty"`
	Vaultwarden   *VaultwardenSummary `json:"vaultwarden,omitempty"`
	Planner       Planner             `json:"planner"`
}

// SummaryTarget is where the snapshot lives: run_dir for local_dir, run_url for webdav.
type SummaryTarget struct {
	Type   string `json:"type"`
	RunDir string `json:"run_dir,omitempty"`
	RunURL string `json:"run_url,omitempty"`
}

// Metrics are the run's sizes.
type Metrics struct {
	SourceTotal        *progress.Units `json:"source_total,omitempty"`
	TransferTotalBytes int64           `json:"transfer_total_bytes"`
}

// FilesystemSummary reports a filesystem source.
type FilesystemSummary struct {
	WarningsTotal int64           `json:"warnings_total"`
	ErrorsTotal   int64           `json:"errors_total"`
	Snapshot      *SourceSnapshot `json:"snapshot"`
	Consistency   any             `json:"consistency"`
}

// SourceSnapshot says what became of snapshot_mode.
type SourceSnapshot struct {
	Mode   string `json:"mode"`
	Status string `json:"status"` // unavailable
	Reason string `json:"reason,omitempty"`
}

// SQLiteSummary reports a sqlite source.
type SQLiteSummary struct {
	Path           string          `json:"path"`
	SnapshotName   string          `json:"snapshot_name"`
	IntegrityCheck *IntegrityCheck `json:"integrity_check,omitempty"`
}

// VaultwardenSummary reports a vaultwarden source.
type VaultwardenSummary struct {
	DataDir     string `json:"data_dir"`
	DB          string `json:"db"`
	Consistency any    `json:"consistency"`
}

// Planner is how the run was executed.
type Planner struct {
	SourceDriver       string `json:"source_driver"`
	TargetDriver       string `json:"target_driver"`
	PlanMode           string `json:"plan_mode"` // rolling_upload | staged_upload
	PlanFallbackReason string `json:"plan_fallback_reason,omitempty"`
}

// run holds the state of one Run call.
type run struct {
	req     Request
	ctx     context.Context
	cancel  context.CancelCauseFunc
	log     zerolog.Logger
	ref     targets.RunRef
	summary Summary
	issues  *fsIssues
	cons    *consistency
	total   *progress.Units
	upBytes atomic.Int64
}

// Run executes one backup. On success the snapshot is complete on the target (complete.json
// written last) and the Summary describes it. On failure the error is an *Error with a stable
// Code; complete.json is never written, and what was uploaded is an incomplete run that the
// incomplete-run cleanup removes. A skip_fail run with issues uploads its parts, index and
// manifest (so the data can be recovered by hand) but not complete.json, and fails with
// fs_issues: unlike the original it leaves no complete-but-unindexed orphan.
func Run(ctx context.Context, req Request) (Summary, error) {
	r := &run{req: req, ref: targets.RunRef{JobID: req.JobID, RunID: req.RunID}}
	r.log = req.Logger.With().Str("component", "backup").Str("job_id", req.JobID).Str("run_id", req.RunID).Logger()
	if r.req.Clock == nil {
		r.req.Clock = clock.Real{}
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.ctx, r.cancel = cctx, cancel
	err := r.execute()
	if err != nil {
		be := classify(ctx, err)
		if ctx.Err() != nil && be.Code != CodeCanceled && !errors.As(err, new(*targets.Error)) {
			be = classify(ctx, context.Cause(ctx))
		}
		return r.summary, be
	}
	return r.summary, nil
}

func (r *run) emit(level, kind, msg string, fields map[string]any) {
	if r.req.Events != nil {
		r.req.Events.Emit(level, kind, msg, fields)
	}
}

func (r *run) execute() error {
	spec := r.req.Spec
	if spec == nil {
		return newErr(CodeInvalidSpec, KindConfig, "The job has no spec.", errors.New("no spec"))
	}
	if err := spec.Validate(); err != nil {
		return newErr(CodeInvalidSpec, KindConfig, "Fix the job's spec.", err)
	}
	if r.req.Target == nil || r.req.StagingDir == "" {
		return newErr(CodeInvalidSpec, KindConfig, "The run has no target or staging directory.", errors.New("incomplete request"))
	}
	staging := r.req.StagingDir
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return newErr(CodeStagingIO, KindIO, "Check the data directory.", fmt.Errorf("create staging: %w", err))
	}
	defer func() {
		if err := os.RemoveAll(staging); err != nil {
			r.log.Warn().Err(err).Msg("remove staging")
		}
	}()
	r.summary = Summary{ArtifactFormat: format.FormatArchiveV1, Target: summaryTarget(r.req.Target, r.ref)}
	r.emit(LevelInfo, "packaging", "packaging started", nil)

	var recipient age.Recipient
	if spec.Pipeline.Encryption.Type == jobspec.EncryptionAgeX25519 {
		if r.req.Keys == nil {
			return newErr(CodeEncryptionKey, KindConfig, "No key store is available for age encryption.", errors.New("no key provider"))
		}
		rc, err := r.req.Keys.Recipient(r.ctx, spec.Pipeline.Encryption.KeyName)
		if err != nil {
			return newErr(CodeEncryptionKey, KindConfig, "The backup encryption key could not be loaded or created.",
				fmt.Errorf("resolve age key %q: %w", spec.Pipeline.Encryption.KeyName, err))
		}
		recipient = rc
	}

	plan := Planner{SourceDriver: spec.Type, TargetDriver: r.req.Target.Type(), PlanMode: "rolling_upload"}
	policy, threshold := consistencyPolicy(spec)
	rawTree := spec.Pipeline.Format == jobspec.FormatRawTreeV1
	switch {
	case rawTree:
		plan.PlanMode = "staged_upload" // rolling upload is for parts; a raw tree has none
	case policy == jobspec.ConsistencyFail:
		plan.PlanMode = "staged_upload"
		plan.PlanFallbackReason = "consistency_fail_policy_blocks_rolling_upload"
	}
	r.summary.Planner = plan
	r.emit(LevelInfo, "planning", "execution planned", map[string]any{
		"source_driver": plan.SourceDriver, "target_driver": plan.TargetDriver,
		"plan_mode": plan.PlanMode, "plan_fallback_reason": nilIfEmpty(plan.PlanFallbackReason),
	})

	src, err := r.prepareSource(staging)
	if err != nil {
		return err
	}
	if rawTree {
		return r.executeRawTree(staging, src, policy, threshold)
	}

	r.req.Progress.Stage("packaging", r.total)
	parts, count, err := r.pack(staging, src, recipient, plan.PlanMode == "rolling_upload")
	if err != nil {
		return err
	}
	r.summary.EntriesCount = count
	r.summary.Parts = len(parts)
	r.summary.Metrics.SourceTotal = r.total

	if err := r.reportIssues(policy, threshold); err != nil {
		return err
	}

	// Upload stage: whatever parts are still local (staged plan), then index, manifest, complete.
	ended := r.req.Clock.Now()
	manifest := format.Manifest{
		FormatVersion: format.FormatVersion, JobID: r.req.JobID, RunID: r.req.RunID,
		StartedAt: rfc3339(r.req.StartedAt), EndedAt: rfc3339(ended),
		Pipeline: format.Pipeline{
			Format: format.FormatArchiveV1, Tar: "pax", Compression: "zstd", Encryption: format.EncryptionNone,
			SplitBytes: spec.Target.PartSizeBytes,
		},
		EntryIndex: format.EntryIndex{Name: targets.EntriesName, Count: count},
	}
	if recipient != nil {
		manifest.Pipeline.Encryption = format.EncryptionAge
		manifest.Pipeline.EncryptionKey = spec.Pipeline.Encryption.KeyName
		r.summary.EncryptionKey = spec.Pipeline.Encryption.KeyName
	}
	for _, p := range parts {
		manifest.Artifacts = append(manifest.Artifacts, p.Part)
	}
	mbytes, err := manifest.Encode()
	if err != nil {
		return err
	}
	indexPath := filepath.Join(staging, targets.EntriesName)
	ifi, err := os.Stat(indexPath)
	if err != nil {
		return newErr(CodeStagingIO, KindIO, "Check the data directory.", fmt.Errorf("stat entries index: %w", err))
	}
	var transfer int64
	for _, p := range parts {
		transfer += p.Size
	}
	transfer += ifi.Size() + int64(len(mbytes)) + int64(len(completeBody))
	r.summary.Metrics.TransferTotalBytes = transfer
	r.req.Progress.Stage("upload", &progress.Units{Bytes: uint64(transfer)})
	r.emit(LevelInfo, "upload", "uploading", map[string]any{"parts": len(parts), "transfer_total_bytes": transfer})
	done := r.upBytes.Load()
	r.uploadProgress(done, transfer)
	for _, p := range parts {
		if p.Path == "" {
			continue // already uploaded by the rolling uploader
		}
		if err := r.ctx.Err(); err != nil {
			return context.Cause(r.ctx)
		}
		if err := putFile(r.ctx, r.req.Target, r.ref, p.Name, p.Path, p.Size); err != nil {
			return err
		}
		_ = os.Remove(p.Path)
		done += p.Size
		r.uploadProgress(done, transfer)
	}
	if err := r.putIndexAndManifest(indexPath, ifi.Size(), mbytes, &done, transfer); err != nil {
		return err
	}
	return r.complete(transfer)
}

// putIndexAndManifest stores the entries index (indexPath, size bytes) and then the manifest,
// adding each to done, of transfer bytes in all, as it is stored.
func (r *run) putIndexAndManifest(indexPath string, size int64, mbytes []byte, done *int64, transfer int64) error {
	if err := putFile(r.ctx, r.req.Target, r.ref, targets.EntriesName, indexPath, size); err != nil {
		return err
	}
	*done += size
	r.uploadProgress(*done, transfer)
	if err := putBytes(r.ctx, r.req.Target, r.ref, targets.ManifestName, mbytes); err != nil {
		return err
	}
	*done += int64(len(mbytes))
	r.uploadProgress(*done, transfer)
	return nil
}

// complete stores complete.json, the mark of a restorable snapshot, once everything else is
// stored: not after filesystem errors under error_policy skip_fail, nor once canceled.
func (r *run) complete(transfer int64) error {
	if r.issues != nil && r.issues.ErrorsTotal > 0 && r.issues.policy == jobspec.ErrorSkipFail {
		return newErr(CodeFSIssues, KindSource,
			"Some source files could not be read; the data was uploaded without complete.json, so it is not a restorable snapshot.",
			fmt.Errorf("%d filesystem errors under error_policy skip_fail", r.issues.ErrorsTotal))
	}
	if err := r.ctx.Err(); err != nil {
		return context.Cause(r.ctx)
	}
	if err := putBytes(r.ctx, r.req.Target, r.ref, targets.CompleteName, []byte(completeBody)); err != nil {
		return err
	}
	r.uploadProgress(transfer, transfer)
	return nil
}

const completeBody = "{}"

func (r *run) uploadProgress(done, total int64) {
	r.req.Progress.SetDetail(map[string]any{"backup": map[string]any{
		"source_total": r.total, "transfer_total_bytes": total, "transfer_done_bytes": done,
	}})
	r.req.Progress.Set(progress.Units{Bytes: uint64(done)})
}

func putBytes(ctx context.Context, t targets.Target, run targets.RunRef, name string, b []byte) error {
	if _, err := t.Put(ctx, run, name, strings.NewReader(string(b)), int64(len(b))); err != nil {
		return uploadError(ctx, name, err)
	}
	return nil
}

func summaryTarget(t targets.Target, ref targets.RunRef) SummaryTarget {
	// Location is a URL for a remote target and a path for a local one.
	st := SummaryTarget{Type: t.Type()}
	if loc := t.Location(ref); strings.Contains(loc, "://") {
		st.RunURL = loc
	} else {
		st.RunDir = loc
	}
	return st
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func consistencyPolicy(s *jobspec.Spec) (string, int64) {
	switch {
	case s.Filesystem != nil:
		return s.Filesystem.ConsistencyPolicy, s.ConsistencyThreshold()
	case s.Vaultwarden != nil:
		return s.Vaultwarden.ConsistencyPolicy, s.ConsistencyThreshold()
	}
	return jobspec.ConsistencyIgnore, 0
}

// source is what pack walks.
type source struct {
	walker *walker
	extra  []item // appended after the walk (Vaultwarden's database snapshot)
	// hardlinkKeep turns nlink > 1 files into tar hard links to their first path.
	hardlinkKeep bool
}

// pack runs walk → tar → zstd → [age] → parts. With rolling, parts are uploaded while packing
// and the returned parts carry an empty Path; otherwise they stay on staging.
func (r *run) pack(staging string, src *source, recipient age.Recipient, rolling bool) ([]closedPart, int64, error) {
	var parts []closedPart
	var up *uploader
	if rolling {
		up = startUploader(r.ctx, r.req.Target, r.ref, r.log, r.cancel, func(total int64) {
			r.upBytes.Store(total)
			r.req.Progress.SetDetail(map[string]any{"backup": map[string]any{
				"source_total": r.total, "transfer_done_bytes": total,
			}})
		})
		defer up.stop()
	}
	onPart := func(p closedPart) error {
		if err := r.ctx.Err(); err != nil {
			if up != nil {
				if uerr := up.failure(); uerr != nil {
					return uerr
				}
			}
			return context.Cause(r.ctx)
		}
		if up == nil {
			parts = append(parts, p)
			return nil
		}
		if err := up.send(r.ctx, p); err != nil {
			return err
		}
		done := p
		done.Path = ""
		parts = append(parts, done)
		return nil
	}
	pw := newPartWriter(staging, r.req.Spec.Target.PartSizeBytes, onPart)
	defer pw.abort()

	var sink io.Writer = pw
	var ageW io.WriteCloser
	if recipient != nil {
		w, err := age.Encrypt(pw, recipient)
		if err != nil {
			return nil, 0, newErr(CodeEncryptionKey, KindConfig, "The age recipient was rejected.", fmt.Errorf("start age encryption: %w", err))
		}
		ageW, sink = w, w
	}
	// Encryption, part hashing and part files run on their own goroutine, beside compression.
	// When packing fails, the run's context is canceled so that goroutine is not left waiting
	// on an upload, and it has ended before pw is aborted (defers run last first).
	handoff := newHandoffWriter(sink, func() { r.cancel(errAborted) })
	defer handoff.abort()
	zw, err := zstd.NewWriter(handoff, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(format.ZstdLevel)),
		zstd.WithEncoderConcurrency(runtime.NumCPU()))
	if err != nil {
		return nil, 0, fmt.Errorf("start zstd: %w", err)
	}
	defer zw.Close()
	tw := tar.NewWriter(zw)
	index, err := newIndexWriter(filepath.Join(staging, targets.EntriesName))
	if err != nil {
		return nil, 0, newErr(CodeStagingIO, KindIO, "Check the data directory.", err)
	}
	defer index.close()
	a := &archiver{tw: tw, index: index, issues: r.issues, cons: r.cons, buf: make([]byte, copyChunk), hasher: blake3.New(),
		onDone: func(u progress.Units) { r.req.Progress.Set(u) }}
	if src.hardlinkKeep {
		a.hardlinks = map[[2]uint64]hardlinkTarget{}
	}
	fail := func(err error) ([]closedPart, int64, error) {
		if up != nil {
			if uerr := up.failure(); uerr != nil {
				return nil, 0, uerr // the uploader's error is the root cause
			}
		}
		return nil, 0, err
	}
	emit := func(it item) error { return a.add(r.ctx, it) }
	if !r.req.sequentialReads {
		a.ra = startReadAhead(r.ctx, src.hardlinkKeep)
		defer a.ra.stop()
		emit = func(it item) error { return a.enqueue(r.ctx, it) }
	}
	src.walker.listFiles = true // the archiver stats each file it opens
	if err := src.walker.walk(r.ctx, emit); err != nil {
		return fail(err)
	}
	if a.ra != nil {
		if err := a.flush(r.ctx); err != nil {
			return fail(err)
		}
	}
	for _, it := range src.extra {
		if err := a.add(r.ctx, it); err != nil {
			return fail(err)
		}
	}
	if err := tw.Close(); err != nil {
		return fail(fmt.Errorf("finish tar: %w", err))
	}
	if err := zw.Close(); err != nil {
		return fail(fmt.Errorf("finish zstd: %w", err))
	}
	if err := handoff.Close(); err != nil {
		return fail(err)
	}
	if ageW != nil {
		if err := ageW.Close(); err != nil {
			return fail(fmt.Errorf("finish age: %w", err))
		}
	}
	if err := pw.Close(); err != nil {
		return fail(err)
	}
	if err := index.close(); err != nil {
		return fail(newErr(CodeStagingIO, KindIO, "Check the data directory.", err))
	}
	if up != nil {
		if err := up.finish(); err != nil {
			return nil, 0, err
		}
	}
	return parts, index.count, nil
}

// reportIssues emits fs_issues and source_consistency events and applies the consistency policy.
func (r *run) reportIssues(policy string, threshold int64) error {
	if fs := r.summary.Filesystem; fs != nil {
		fs.WarningsTotal, fs.ErrorsTotal = r.issues.WarningsTotal, r.issues.ErrorsTotal
	}
	if r.issues != nil && (r.issues.WarningsTotal > 0 || r.issues.ErrorsTotal > 0) {
		level := LevelWarn
		if r.issues.ErrorsTotal > 0 {
			level = LevelError
		}
		r.emit(level, "fs_issues", fmt.Sprintf("%d warnings, %d errors while reading the source",
			r.issues.WarningsTotal, r.issues.ErrorsTotal), map[string]any{
			"warnings_total": r.issues.WarningsTotal, "errors_total": r.issues.ErrorsTotal,
			"warnings": r.issues.Warnings, "errors": r.issues.Errors,
		})
	}
	if r.cons == nil || policy == jobspec.ConsistencyIgnore || r.cons.Total() == 0 {
		return nil
	}
	fields := map[string]any{"report": r.cons, "policy": policy, "threshold": threshold}
	msg := fmt.Sprintf("%d files changed while they were read", r.cons.Total())
	if policy == jobspec.ConsistencyFail && r.cons.Total() > threshold {
		r.emit(LevelError, "source_consistency", msg, fields)
		return newErr(CodeSourceConsistency, KindSource,
			"Files changed while they were read; nothing was uploaded. Back up when the source is quiet, or use a warn policy.",
			fmt.Errorf("%d consistency issues exceed the threshold %d", r.cons.Total(), threshold))
	}
	r.emit(LevelWarn, "source_consistency", msg, fields)
	return nil
}
