package main

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/agekeys"
	"github.com/bastion-backup/bastion/engine/backupexec"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/snapshots"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/hub/internal/config"
	"github.com/bastion-backup/bastion/hub/internal/supervise"
	"github.com/bastion-backup/bastion/storage"
)

// backupServices are what runs backups on the Hub and looks after their snapshots: the run
// queue's executor, the snapshot service (delete queue, retention, incomplete-run cleanup) and
// restore/verify operations. They share one target opener (credentials from the secrets store).
type backupServices struct {
	executor  *backupexec.Executor
	snapshots *snapshots.Service
	ops       *operations.Service
}

// agentParts are how backup services reach agents: their targets (snapshot deletes and
// incomplete-run cleanup in an agent's directories) and restores that run on them.
type agentParts struct {
	targets  opener.RemoteOpener
	restores operations.Remote
}

// newBackupServices builds them and cleans up after a previous process that stopped abruptly:
// operations it left running are marked failed (restores an agent still owes stay running), and
// scratch directories of runs and operations are removed. It runs before anything can start a
// run or an operation.
//
// hookOps, when set, is given the operations service before its recovery, so that hooks on the
// end of an operation (drills recording a job's proof) also see the operations recovery ends.
func newBackupServices(ctx context.Context, cfg config.Config, db *storage.DB, store *secrets.Store, keys *agekeys.Keys, agents agentParts, log zerolog.Logger, hookOps func(*operations.Service)) (*backupServices, error) {
	clk := clock.Real{}
	targets := opener.New(opener.Config{Secrets: store, Remote: agents.targets, Logger: log})
	b := &backupServices{
		// The Hub runs hooks: only an admin can set them (httpapi.authorizeHooks).
		executor: backupexec.New(backupexec.Config{DataDir: cfg.DataDir, Opener: targets, Keys: keys, Clock: clk, Logger: log,
			AllowHooks: true}),
		snapshots: snapshots.New(snapshots.Config{DB: db, Clock: clk, Opener: targets, Logger: log,
			IncompleteCleanupDays: cfg.IncompleteCleanupDays}),
		ops: operations.New(operations.Config{DB: db, Clock: clk, Logger: log, DataDir: cfg.DataDir, Opener: targets, Keys: keys,
			Remote: agents.restores, EntriesCacheMaxBytes: cfg.EntriesCacheMaxBytes}),
	}
	if err := backupexec.CleanRunDirs(cfg.DataDir); err != nil {
		return nil, err
	}
	if hookOps != nil {
		hookOps(b.ops)
	}
	n, err := b.ops.Recover(ctx)
	if err != nil {
		return nil, fmt.Errorf("recover operations: %w", err)
	}
	if n > 0 {
		log.Warn().Int("operations", n).Msg("restores or verifies interrupted by the last shutdown were marked failed")
	}
	return b, nil
}

// start runs the snapshot loops and the operations' shutdown watcher under supervision.
func (b *backupServices) start(group *supervise.Group) {
	group.Go("snapshot-deletes", b.snapshots.RunDeletes)
	group.Go("incomplete-cleanup", b.snapshots.RunCleanup)
	group.Go("snapshot-retention", b.snapshots.RunRetention)
	group.Go("operations", b.ops.Run)
}
