// Package all is the one list of notification channels. Adding a channel is one line here (and
// its own package); enqueueing, the worker, settings, templates, storage queries, job specs and
// the HTTP handlers all ask this list.
package all

import (
	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/channel/email"
	"github.com/bastion-backup/bastion/engine/notify/channel/webhook"
	"github.com/bastion-backup/bastion/engine/notify/channel/wecombot"
)

// Drivers returns the channels in display order (a new slice each call).
func Drivers() channel.List {
	return channel.List{
		wecombot.Driver{},
		email.Driver{},
		webhook.Driver{},
	}
}
