package main

import (
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
)

// newAgentExecutor is what runs tasks in `bastion agent`. Until the backup pipeline is wired in,
// nil makes the agent fail each task with error_code "unsupported".
func newAgentExecutor(zerolog.Logger) client.Executor { return nil }
