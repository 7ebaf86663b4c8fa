package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/hub/internal/config"
	"github.com/bastion-backup/bastion/hub/internal/logging"
)

// agentFlags are the options of `bastion agent`; each also reads a BASTION_* variable.
type agentFlags struct {
	hubURL, enrollToken, name, dataDir, heartbeat, log, logFormat, entriesCacheMaxBytes string
	allowHooks                                                                          bool
}

func parseAgentFlags(args []string, getenv func(string) string, stderr io.Writer) (agentFlags, error) {
	f := agentFlags{
		hubURL:      getenv("BASTION_HUB_URL"),
		enrollToken: getenv("BASTION_ENROLL_TOKEN"),
		name:        getenv("BASTION_AGENT_NAME"),
		// Not BASTION_DATA_DIR: that is the Hub's, and an agent on the Hub's machine would share
		// (and at start empty) the Hub's runs/ and operations/.
		dataDir:   getenv("BASTION_AGENT_DATA_DIR"),
		heartbeat: getenv("BASTION_HEARTBEAT_SECONDS"),
		log:       getenv("BASTION_LOG"),
		logFormat: getenv("BASTION_LOG_FORMAT"),
		// The same variable as the Hub's: each bounds its own cache/entries.
		entriesCacheMaxBytes: getenv("BASTION_ENTRIES_CACHE_MAX_BYTES"),
	}
	if f.heartbeat == "" {
		f.heartbeat = "15"
	}
	if f.entriesCacheMaxBytes == "" {
		f.entriesCacheMaxBytes = "1GiB"
	}
	fs := flag.NewFlagSet("bastion agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.hubURL, "hub-url", f.hubURL, "the Hub's URL, e.g. http://127.0.0.1:9876 (env BASTION_HUB_URL)")
	fs.StringVar(&f.enrollToken, "enroll-token", f.enrollToken, "enrollment token, needed once (env BASTION_ENROLL_TOKEN)")
	fs.StringVar(&f.name, "name", f.name, "agent name shown in the Hub (env BASTION_AGENT_NAME)")
	fs.StringVar(&f.dataDir, "data-dir", f.dataDir, "where the agent keeps agent.json and its task records; never the Hub's data directory (env BASTION_AGENT_DATA_DIR; default <data dir>/agent)")
	fs.StringVar(&f.heartbeat, "heartbeat-seconds", f.heartbeat, "ping interval in seconds, fractions allowed; no pong for 3 intervals means the link is dead (env BASTION_HEARTBEAT_SECONDS)")
	fs.StringVar(&f.log, "log", f.log, "log level: trace, debug, info, warn, error (env BASTION_LOG)")
	fs.StringVar(&f.logFormat, "log-format", f.logFormat, "log format: auto (console on a terminal, JSON otherwise), console, json (env BASTION_LOG_FORMAT)")
	f.allowHooks = getenv("BASTION_ALLOW_HOOKS") == "1" || getenv("BASTION_ALLOW_HOOKS") == "true"
	fs.BoolVar(&f.allowHooks, "allow-hooks", f.allowHooks, "run the before/after hook commands of this agent's jobs, as this agent's user; without it a job with hooks fails its runs (env BASTION_ALLOW_HOOKS=1)")
	fs.StringVar(&f.entriesCacheMaxBytes, "entries-cache-max-bytes", f.entriesCacheMaxBytes, "size bound of the restore picker's snapshot index cache (cache/entries), least recently used indexes go first; bytes, or with KiB, MiB, GiB, TiB (env BASTION_ENTRIES_CACHE_MAX_BYTES)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("bastion agent: unexpected argument %q", fs.Arg(0))
	}
	return f, nil
}

// parseHeartbeat accepts seconds (fractions allowed: tests use short intervals); 0 is rejected.
func parseHeartbeat(s string) (time.Duration, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("--heartbeat-seconds %q: want a number of seconds", s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("--heartbeat-seconds must be greater than 0")
	}
	if v > 3600 {
		return 0, fmt.Errorf("--heartbeat-seconds must be at most 3600")
	}
	return time.Duration(v * float64(time.Second)), nil
}

// runAgent is `bastion agent`.
func runAgent(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	f, err := parseAgentFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	hb, err := parseHeartbeat(f.heartbeat)
	if err != nil {
		return err
	}
	cacheMax, err := config.ParseBytes(f.entriesCacheMaxBytes)
	if err != nil {
		return fmt.Errorf("--entries-cache-max-bytes: %w", err)
	}
	if f.dataDir == "" {
		base, err := config.ResolveDataDir("")
		if err != nil {
			return err
		}
		f.dataDir = filepath.Join(base, "agent")
	} else if f.dataDir, err = filepath.Abs(f.dataDir); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	console, err := logging.ConsoleFor(f.logFormat, logging.IsTerminal(stderr))
	if err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	log, closeLog, err := logging.New(logging.Options{Level: f.log, Out: stderr, Console: console})
	if err != nil {
		return err
	}
	defer closeLog.Close()
	managed, err := client.OpenManaged(f.dataDir, time.Now)
	if err != nil {
		return err
	}
	// One executor reads snapshots for restores, verifies and the Hub's restore picker.
	snapshots := client.NewRestoreExecutor(f.dataDir, managed, log, client.WithEntriesCacheMaxBytes(cacheMax))
	backups := client.NewBackupExecutor(f.dataDir, managed, log)
	backups.AllowHooks = f.allowHooks
	if f.allowHooks {
		log.Warn().Msg("--allow-hooks: this agent runs the hook commands of its jobs")
	}
	return client.Run(ctx, client.Options{
		HubURL: f.hubURL, EnrollToken: f.enrollToken, Name: f.name, DataDir: f.dataDir,
		Heartbeat: hb, Version: version, Logger: log, Managed: managed,
		Executor: backups,
		Restorer: snapshots, Verifier: snapshots, Entries: snapshots,
	})
}
