// Package all is the list of target drivers: the one place that knows them all. Adding a target
// is one line here (see docs/development.md, "Adding a target").
package all

import (
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/s3"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
)

// Drivers are the target drivers this build knows.
var Drivers = []targets.Driver{
	localdir.Driver,
	webdav.Driver,
	s3.Driver,
}

// Registry finds the drivers of Drivers by type.
var Registry = targets.NewRegistry(Drivers...)
