package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bastion-backup/bastion/agent/fsrpc"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
)

// fsList answers the Hub's fs_list from this machine's disk.
func (a *Agent) fsList(m *protocol.FsList) *protocol.FsListResult { return fsrpc.Answer(m) }

// entriesList answers the Hub's entries_list (the restore picker of a snapshot in one of this
// agent's directories).
func (a *Agent) entriesList(ctx context.Context, m *protocol.EntriesList) *protocol.EntriesListResult {
	res := a.ents.Entries(ctx, m)
	res.RequestID = m.RequestID
	return res
}

// webdavList answers the Hub's webdav_list with this agent's credential from its secrets
// snapshot (missing_webdav_secret when it has none of that name).
func (a *Agent) webdavList(ctx context.Context, m *protocol.WebdavList) *protocol.WebdavListResult {
	ctx, cancel := context.WithTimeout(ctx, fsrpc.WebDAVTimeout)
	defer cancel()
	return fsrpc.AnswerWebDAV(ctx, m, a.webdavCredential, a.log)
}

func (a *Agent) webdavCredential(ctx context.Context, name, baseURL string) (secrets.WebDAV, error) {
	var cred secrets.WebDAV
	if a.o.Managed == nil {
		return cred, fmt.Errorf("webdav secret %q: %w", name, secrets.ErrNotFound)
	}
	// The Hub checked the origin before asking; this agent checks again with the origins the Hub
	// sent in its secrets snapshot, so a listing never sends the credential elsewhere.
	switch allowed, err := a.o.Managed.AllowedOrigins(ctx, "", secrets.KindWebDAV, name); {
	case errors.Is(err, secrets.ErrOriginsUntracked):
	case err != nil:
		return cred, err
	default:
		if err := secrets.CheckOrigin(secrets.KindWebDAV, name, baseURL, allowed); err != nil {
			return cred, err
		}
	}
	raw, err := a.o.Managed.Get(ctx, "", secrets.KindWebDAV, name)
	if err != nil {
		return cred, err
	}
	if err := json.Unmarshal(raw, &cred); err != nil {
		return cred, errors.New("the stored WebDAV credential is not valid")
	}
	return cred, nil
}

// snapshotDelete removes a run directory from a local_dir target on this machine. Deletes do not
// take the run lock: a snapshot being deleted belongs to a finished run, and waiting behind a long
// backup would only make the Hub time out and retry.
func (a *Agent) snapshotDelete(ctx context.Context, t *protocol.SnapshotDelete) *protocol.SnapshotDeleteResult {
	res := &protocol.SnapshotDeleteResult{RunID: t.RunID}
	log := a.log.With().Str("run_id", t.RunID).Str("job_id", t.JobID).Logger()
	tgt, err := localdir.New(t.BaseDir, localdir.WithLogger(a.log))
	if err == nil {
		var out targets.DeleteResult
		out, err = tgt.DeleteRun(ctx, targets.RunRef{JobID: t.JobID, RunID: t.RunID})
		if err == nil {
			res.Status = protocol.DeleteSuccess
			if out == targets.DeleteNotFound {
				res.Status = protocol.DeleteNotFound
			}
			// Its cached index is of no use any more (if the cache is busy with it, it goes at
			// a later start).
			_ = os.RemoveAll(filepath.Join(entriesCacheDir(a.o.DataDir), t.RunID))
			log.Info().Str("status", res.Status).Msg("snapshot deleted at the hub's request")
			return res
		}
	}
	kind, msg := targets.KindOf(err), err.Error()
	res.Status, res.ErrorKind, res.Error = protocol.DeleteFailed, &kind, &msg
	log.Warn().Err(err).Msg("snapshot delete failed")
	return res
}

// snapshotCleanup removes what an incomplete run left in a local_dir target on this machine; a
// complete run is never touched.
func (a *Agent) snapshotCleanup(ctx context.Context, t *protocol.SnapshotDelete) *protocol.SnapshotCleanupResult {
	res := &protocol.SnapshotCleanupResult{RunID: t.RunID}
	log := a.log.With().Str("run_id", t.RunID).Str("job_id", t.JobID).Logger()
	tgt, err := localdir.New(t.BaseDir, localdir.WithLogger(a.log))
	if err == nil {
		var out targets.CleanupResult
		out, err = tgt.CleanupRun(ctx, targets.RunRef{JobID: t.JobID, RunID: t.RunID})
		if err == nil {
			res.Status = string(out)
			log.Info().Str("status", res.Status).Msg("incomplete run cleaned up at the hub's request")
			return res
		}
	}
	kind, msg := targets.KindOf(err), err.Error()
	res.Status, res.ErrorKind, res.Error = protocol.CleanupFailed, &kind, &msg
	log.Warn().Err(err).Msg("incomplete run cleanup failed")
	return res
}
