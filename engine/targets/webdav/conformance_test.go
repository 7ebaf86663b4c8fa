package webdav_test

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
)

// golang.org/x/net/webdav in process: quick and always available.
func TestConformanceXNet(t *testing.T) {
	t.Parallel()
	up := startXNet(t)
	targettest.Run(t, func(t *testing.T) targets.Target {
		return newRealTarget(t, up)
	})
}

// rclone serve webdav: a real, separately built server.
func TestConformanceRclone(t *testing.T) {
	t.Parallel()
	up := startRclone(t)
	targettest.Run(t, func(t *testing.T) targets.Target {
		return newRealTarget(t, up)
	})
}

// newRealTarget waits on the wall clock between attempts: against a real server, a retry after
// a canceled request may need the server to notice first (x/net/webdav keeps the path locked
// until the abandoned PUT's handler ends). Only such races ever wait.
func newRealTarget(t *testing.T, up upstream) targets.Target {
	tg, err := webdav.New(up.base, secrets.WebDAV{Username: up.user, Password: up.pass},
		webdav.Options{Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	return tg.WithRetries() // as the driver opens it: the retries ride out the races above
}
