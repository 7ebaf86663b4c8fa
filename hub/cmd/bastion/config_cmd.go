package main

import (
	"context"
	"io"

	"github.com/bastion-backup/bastion/hub/internal/config"
)

// runConfig prints the effective configuration and where each value came from.
func runConfig(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	asJSON := false
	var rest []string
	for _, a := range args {
		if a == "--json" || a == "-json" {
			asJSON = true
			continue
		}
		rest = append(rest, a)
	}
	cfg, err := loadConfig(ctx, rest, getenv)
	if err != nil {
		return err
	}
	return config.Print(stdout, cfg, asJSON)
}
