package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	stdlog "log"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bastion-backup/bastion/engine/agekeys"
	"github.com/bastion-backup/bastion/engine/backupexec"
	"github.com/bastion-backup/bastion/engine/bulk"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/drills"
	"github.com/bastion-backup/bastion/engine/jobgate"
	"github.com/bastion-backup/bastion/engine/maintenance"
	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/operations"
	"github.com/bastion-backup/bastion/engine/runs"
	"github.com/bastion-backup/bastion/engine/scheduler"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/httpapi/audit"
	"github.com/bastion-backup/bastion/httpapi/metrics"
	"github.com/bastion-backup/bastion/httpapi/webui"
	"github.com/bastion-backup/bastion/hub/internal/config"
	"github.com/bastion-backup/bastion/hub/internal/logging"
	"github.com/bastion-backup/bastion/hub/internal/supervise"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/ui"
)

// shutdownGrace bounds how long in-flight HTTP requests may take to finish after SIGTERM.
const shutdownGrace = 10 * time.Second

// runHub resolves the configuration, opens the database, builds every service and runs them until
// ctx ends (a signal) or one of them fails.
func runHub(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(ctx, args, getenv)
	if err != nil {
		return err
	}
	console, err := logging.ConsoleFor(cfg.LogFormat, logging.IsTerminal(stderr))
	if err != nil {
		return err
	}
	log, closeLog, err := logging.New(logging.Options{
		Level: cfg.Log, File: cfg.LogFile, Rotation: cfg.LogRotation, KeepFiles: cfg.LogKeepFiles,
		Out: stderr, Console: console,
	})
	if err != nil {
		return err
	}
	defer closeLog.Close()
	log.Info().Str("version", version).Str("data_dir", cfg.DataDir).Str("listen", cfg.Addr()).
		Str("hub_timezone", cfg.HubTimezone).Bool("insecure_http", cfg.InsecureHTTP).Msg("starting Bastion Hub")

	db, err := storage.Open(ctx, filepath.Join(cfg.DataDir, "bastion.db"), storage.Options{BusyTimeout: cfg.DBBusyTimeout, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := db.Close(); err != nil {
			log.Warn().Err(err).Msg("close database")
		}
	}()

	keyPath := filepath.Join(cfg.DataDir, secrets.MasterKeyFile)
	keys, created, err := secrets.OpenKeyring(ctx, db, keyPath, time.Now())
	if err != nil {
		return err
	}
	if created {
		log.Warn().Str("path", keyPath).Msg("created a new master key: back it up now with `bastion keypack export`, without it stored credentials cannot be decrypted")
	}
	log.Info().Uint32("active_kid", keys.ActiveKID()).Msg("master key loaded")

	uiFS, uiSource, err := resolveUI(cfg.UIDir)
	if err != nil {
		return err
	}
	log.Info().Str("source", uiSource).Msg("serving the web UI")

	store := secrets.NewStore(db, keys, clock.Real{})

	// Notifications append notify_sent/notify_failed to run logs, so they share the run queue's bus
	// for live subscribers.
	runEvents := runs.NewBus()
	notifier, err := notify.New(notify.Options{DB: db, Secrets: store, Clock: clock.Real{}, Logger: log,
		PublicBaseURL: cfg.PublicBaseURL, Publish: runEvents.Publish})
	if err != nil {
		return err
	}

	// Agents: runs reach them through agentRuns, restores through agentRestores, and the snapshot
	// queues reach their directories through agentsock.Targets. Runs they upload after
	// running offline are notified like runs that end on the Hub.
	agentRuns := agentsock.NewRunBridge()
	agentRestores := agentsock.NewRestoreBridge(store)
	ageKeys := agekeys.New(store)
	// Drills (scheduled verification) and backups of one job never overlap, and drills share each
	// target's slots, through one gate that the run queue and the drill service both consult.
	gate := jobgate.New(cfg.DrillsPerTarget)
	var drillSvc *drills.Service // built with the operations service, before anything connects
	onAgentConnect := func(id string) {
		agentRuns.AgentConnected(id)
		drillSvc.Wake()
	}
	agents := agentsock.New(agentsock.Config{DB: db, Clock: clock.Real{}, Logger: log, InsecureHTTP: cfg.InsecureHTTP,
		Sink: agentRuns, OnConnect: onAgentConnect, Operations: agentRestores, Keys: ageKeys, Notifier: notifier,
		Snapshots: agentsock.StoreSnapshots{DB: db, Store: store, Keys: ageKeys, Clock: clock.Real{}}})
	// Deferred after the database's Close, so it runs before it: no agent socket goroutine may
	// write to a closed database. (The "agents" loop closes the sockets already when it stops;
	// this covers a return before the loops started.)
	defer agents.Close()
	backups, err := newBackupServices(ctx, cfg, db, store, ageKeys, agentParts{
		targets: agentsock.Targets{Hub: agents, Secrets: store, Logger: log}, restores: agentRestores}, log,
		func(ops *operations.Service) {
			drillSvc = drills.New(drills.Config{DB: db, Clock: clock.Real{}, Log: log, Ops: ops, Gate: gate,
				Notifier: notifier, Agents: agentRuns})
		})
	if err != nil {
		return err
	}
	agentRestores.Attach(agents, backups.ops)

	// Metrics: one registry for this Hub. The run queue and the scheduler report run durations
	// and trigger lateness to it; everything else it reads from the database at each scrape.
	hubMetrics := metrics.New(metrics.Options{DB: db, Clock: clock.Real{}, Logger: log,
		OnlineWindow: agentsock.OnlineWindow, Version: version})

	// The run queue: Hub runs through the backup executor, agent runs through the agent sockets.
	// A successful run's snapshot is indexed, and notifications are queued, in the transaction
	// that records the run's end, so neither can be lost to a crash between the two.
	runQueue := runs.New(runs.Config{DB: db, Clock: clock.Real{}, Log: log, Concurrency: cfg.RunConcurrency,
		Executor: backups.executor, Agents: agentRuns, Bus: runEvents,
		OnFinished: []runs.FinishHook{
			backupexec.IndexSnapshot,
			func(ctx context.Context, q storage.Q, f runs.Finished) error {
				_, err := notifier.EnqueueFinished(ctx, q, f.Run, f.Job.SpecJSON)
				return err
			},
		},
		AfterFinished: []func(runs.Finished){func(runs.Finished) { notifier.Wake(); drillSvc.Wake() }},
		Gate:          gate,
		Observer:      hubMetrics,
	})
	gate.OnDrillEnd(runQueue.Wake)
	agentRuns.Attach(agents, runQueue)
	if n, err := runQueue.Recover(ctx); err != nil {
		return err
	} else if n > 0 {
		log.Warn().Int("runs", n).Msg("runs interrupted by the last shutdown were marked failed (hub_restarted)")
	}
	sched := scheduler.New(scheduler.Config{DB: db, Clock: clock.Real{}, Log: log, Runs: runQueue, Agents: agentRuns,
		Observer: hubMetrics})
	syncAgents := func(ctx context.Context, jobID string, agentIDs []string) {
		for _, id := range agentIDs {
			if _, err := agents.SyncConfig(ctx, id); err != nil {
				log.Warn().Err(err).Str("agent_id", id).Str("job_id", jobID).Msg("push config after a job change")
			}
		}
	}
	auditLog := audit.NewRecorder(db, log)
	runtimeCfg := runtimeConfigFor(cfg)
	// Bulk operations: the API registers each kind's work with the loop.
	bulkLoop := bulk.New(bulk.Config{DB: db, Clock: clock.Real{}, Log: log})
	handler := httpapi.New(httpapi.Config{
		Logger:         log,
		DB:             db,
		UI:             uiFS,
		Version:        version,
		BuildTimeUnix:  parseBuildTime(),
		HubTimezone:    cfg.HubTimezone,
		InsecureHTTP:   cfg.InsecureHTTP,
		TrustedProxies: cfg.TrustedProxies,
		DebugErrors:    cfg.DebugErrors,
		PublicBaseURL:  cfg.PublicBaseURL,
		// The name the Hub listens on (--host hub.lan) is one of its own; addresses pass anyway.
		AllowedHosts:    append(cfg.AllowedHosts[:len(cfg.AllowedHosts):len(cfg.AllowedHosts)], cfg.Host),
		BodyReadTimeout: cfg.BodyReadTimeout,
		DataDir:         cfg.DataDir,
		Agents:          agents,
		Clock:           clock.Real{},
		Secrets:         store,
		Snapshots:       backups.snapshots,
		Operations:      backups.ops,
		Runs:            runQueue,
		Scheduler:       sched,
		Drills:          drillSvc,
		DrillErrors:     httpapi.DrillErrors{JobArchived: drills.ErrJobArchived, NoSnapshot: drills.ErrNoSnapshot},
		OnJobChanged:    syncAgents,
		Notifications:   notifier,
		Bulk:            bulkLoop,
		OnSecretDeleted: notifier.SecretDeleted,
		Metrics:         hubMetrics,
		MetricsPublic:   cfg.MetricsPublic,
		Audit:           auditLog,
		Runtime:         &runtimeCfg,
	})

	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr(), err)
	}

	group, gctx := supervise.New(ctx, log)
	// Hijacked connections (WebSockets) are not drained by Shutdown; they end when this context
	// ends, which happens after plain requests had their grace period.
	connCtx, cancelConns := context.WithCancel(context.WithoutCancel(gctx))
	defer cancelConns()
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return connCtx },
		ErrorLog:          stdlog.New(log.With().Str("component", "http-server").Logger(), "", 0),
	}
	group.Go("http", func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return fmt.Errorf("serve HTTP: %w", err)
		case <-ctx.Done():
		}
		log.Info().Msg("shutting down: draining HTTP requests")
		drainCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err := srv.Shutdown(drainCtx)
		cancelConns()
		// The rows of the last requests, before the database closes.
		if ferr := auditLog.Flush(drainCtx); ferr != nil {
			log.Warn().Err(ferr).Msg("audit entries of the last requests may be lost")
		}
		if err != nil {
			return fmt.Errorf("drain HTTP: %w", err)
		}
		return nil
	})
	group.Go("agents", agents.Run)
	group.Go("agent-timeouts", agents.RunTimeouts)
	backups.start(group)
	group.Go("maintenance", (&maintenance.Loop{DB: db, Clock: clock.Real{}, Log: log, AuditRetentionDaysFunc: runtimeCfg.Live.AuditRetentionDays}).Run)
	group.Go("runs", runQueue.Run)
	group.Go("scheduler", sched.Run)
	group.Go("drills", drillSvc.Run)
	group.Go("notifications", notifier.Run)
	group.Go("bulk-operations", bulkLoop.Run)
	group.Go("run-pruning", (&runs.Pruner{DB: db, Clock: clock.Real{}, Log: log, RetentionDaysFunc: runtimeCfg.Live.RunRetentionDays}).Run)

	log.Info().Str("url", "http://"+ln.Addr().String()).Msg("Hub is listening")
	err = group.Wait()
	if err != nil {
		return err
	}
	log.Info().Msg("Hub stopped")
	return nil
}

// loadConfig resolves flags and environment, then lets the runtime settings saved in the
// database fill what neither set.
func loadConfig(ctx context.Context, args []string, getenv func(string) string) (config.Config, error) {
	cfg, err := config.Load(args, getenv, nil)
	if err != nil {
		return cfg, err
	}
	if cfg.DataDir, err = config.ResolveDataDir(cfg.DataDir); err != nil {
		return cfg, err
	}
	saved, err := savedRuntimeConfig(ctx, cfg)
	if err != nil {
		return cfg, err
	}
	if len(saved) == 0 {
		return cfg, nil
	}
	dataDir := cfg.DataDir
	cfg, err = config.Load(args, getenv, saved)
	cfg.DataDir = dataDir
	return cfg, err
}

// savedRuntimeConfig reads settings key hub_runtime_config_v1 ({"hub_timezone": "...", ...}) as
// option name → value, for the options the database may supply. A missing database or key is
// simply no saved config.
func savedRuntimeConfig(ctx context.Context, cfg config.Config) (map[string]string, error) {
	raw, err := storage.ReadSettingFile(ctx, filepath.Join(cfg.DataDir, "bastion.db"), storage.SettingHubRuntimeConfig)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return nil, fmt.Errorf("saved runtime config (settings %s) is not valid JSON: %w", storage.SettingHubRuntimeConfig, err)
	}
	out := map[string]string{}
	for _, name := range config.DBOptionNames() {
		key := jsonKey(name)
		if name == "log" {
			// The original saves the log level as log_filter; builds before it used "log".
			key = "log_filter"
			if _, ok := doc[key]; !ok {
				key = "log"
			}
		}
		if v, ok := doc[key]; ok && v != nil {
			out[name] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// runtimeConfigFor describes the resolved configuration for the runtime config page, by the
// page's field names, and starts the live settings the pruning loops read.
func runtimeConfigFor(cfg config.Config) httpapi.RuntimeConfig {
	proxies := make([]string, len(cfg.TrustedProxies))
	for i, p := range cfg.TrustedProxies {
		proxies[i] = p.String()
	}
	fields := map[string]httpapi.RuntimeField{}
	add := func(field, option string, value any) {
		env, def, _ := config.Describe(option)
		src := cfg.Sources[option]
		if src == "" {
			src = config.SourceDefault
		}
		var defVal any = def
		if n, err := strconv.Atoi(def); err == nil {
			defVal = n
		}
		fields[field] = httpapi.RuntimeField{Value: value, Source: string(src), Env: env, Default: defVal}
	}
	add("bind_host", "host", cfg.Host)
	add("bind_port", "port", cfg.Port)
	add("data_dir", "data-dir", cfg.DataDir)
	add("insecure_http", "insecure-http", cfg.InsecureHTTP)
	add("trusted_proxies", "trusted-proxy", proxies)
	add("debug_errors", "debug-errors", cfg.DebugErrors)
	add("hub_timezone", "hub-timezone", cfg.HubTimezone)
	add("run_retention_days", "run-retention-days", cfg.RunRetentionDays)
	add("audit_retention_days", "audit-retention-days", cfg.AuditRetentionDays)
	add("incomplete_cleanup_days", "incomplete-cleanup-days", cfg.IncompleteCleanupDays)
	add("public_base_url", "public-base-url", nilIfEmpty(cfg.PublicBaseURL))
	add("log_filter", "log", cfg.Log)
	add("log_file", "log-file", nilIfEmpty(cfg.LogFile))
	add("log_rotation", "log-rotation", cfg.LogRotation)
	add("log_keep_files", "log-keep-files", cfg.LogKeepFiles)
	return httpapi.RuntimeConfig{Fields: fields,
		Live: httpapi.NewLiveSettings(cfg.RunRetentionDays, cfg.AuditRetentionDays)}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func jsonKey(option string) string {
	b := []byte(option)
	for i, c := range b {
		if c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}

// resolveUI picks the UI build: BASTION_UI_DIR, else ./ui/dist when it holds a build, else the
// copy embedded in the binary.
func resolveUI(dir string) (fs.FS, string, error) {
	if dir != "" {
		fsys, err := webui.Dir(dir)
		if err != nil {
			return nil, "", fmt.Errorf("BASTION_UI_DIR: %w", err)
		}
		return fsys, dir, nil
	}
	if fsys, err := webui.Dir(filepath.Join("ui", "dist")); err == nil {
		return fsys, "ui/dist", nil
	}
	if ui.IsPlaceholder() {
		return ui.FS(), "embedded placeholder (the web app was not built into this binary)", nil
	}
	return ui.FS(), "embedded", nil
}

func parseBuildTime() int64 {
	n, _ := strconv.ParseInt(buildTime, 10, 64)
	return n
}
