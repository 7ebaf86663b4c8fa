package opener

import (
	"context"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
)

// openWebDAV builds a WebDAV target with the node's credential named by the target. The
// credential is read on every open, so a rotated password applies at once, old snapshots too.
func (o *Opener) openWebDAV(ctx context.Context, rt targets.RunTarget) (targets.Target, error) {
	cred, err := o.webdavCredentials(ctx, rt)
	if err != nil {
		return nil, err
	}
	t, err := webdav.New(rt.Target.BaseURL, cred, webdav.Options{SecretName: rt.Target.SecretName, Logger: o.log})
	if err != nil {
		return nil, err // a *targets.Error of kind config; it never carries the credential
	}
	return t, nil
}
