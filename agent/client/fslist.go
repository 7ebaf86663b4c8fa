package client

import (
	"github.com/bastion-backup/bastion/agent/fsrpc"
	"github.com/bastion-backup/bastion/agent/protocol"
)

// fsList answers the Hub's fs_list from this machine's disk.
func (a *Agent) fsList(m *protocol.FsList) *protocol.FsListResult { return fsrpc.Answer(m) }
