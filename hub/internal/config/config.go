// Package config resolves the Hub's settings from command-line flags, BASTION_* environment
// variables, the runtime settings saved in the database, and defaults — in that order of
// precedence — and remembers where each value came from so `bastion config` can show it.
package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Source says where a value came from.
type Source string

const (
	SourceCLI     Source = "cli"
	SourceEnv     Source = "env"
	SourceDB      Source = "db"
	SourceDefault Source = "default"
)

// Config is the Hub's effective configuration.
type Config struct {
	Host                  string
	Port                  int
	DataDir               string
	InsecureHTTP          bool
	DebugErrors           bool
	RunRetentionDays      int
	AuditRetentionDays    int
	IncompleteCleanupDays int
	HubTimezone           string
	PublicBaseURL         string
	TrustedProxies        []netip.Prefix
	AllowedHosts          []string
	BodyReadTimeout       time.Duration
	Log                   string
	LogFormat             string
	LogFile               string
	LogRotation           string
	LogKeepFiles          int
	DBBusyTimeout         time.Duration
	RunConcurrency        int
	EntriesCacheMaxBytes  int64
	DrillsPerTarget       int
	MetricsPublic         bool
	UIDir                 string // BASTION_UI_DIR (env only); empty: ./ui/dist if present, else embedded

	// Sources maps each option name to where its value came from.
	Sources map[string]Source
}

// Addr is host:port to listen on.
func (c Config) Addr() string { return netJoin(c.Host, c.Port) }

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// option describes one setting. fromDB: the saved runtime config may supply it.
type option struct {
	name, env, usage string
	envAlt           string // read when env is unset
	def              string
	fromDB           bool
	isBool           bool // a bare --flag means true
	set              func(c *Config, v string) error
}

var options = []option{
	{name: "host", env: "BASTION_HOST", def: "127.0.0.1", usage: "address to listen on",
		set: func(c *Config, v string) error { c.Host = v; return nil }},
	{name: "port", env: "BASTION_PORT", def: "9876", usage: "port to listen on",
		set: func(c *Config, v string) error { return setInt(&c.Port, v, 1, 65535) }},
	{name: "data-dir", env: "BASTION_DATA_DIR", usage: "data directory (database, master.key, staging)",
		set: func(c *Config, v string) error { c.DataDir = v; return nil }},
	{name: "insecure-http", env: "BASTION_INSECURE_HTTP", def: "false", isBool: true, usage: "allow plain HTTP and WebSocket from non-loopback clients",
		set: func(c *Config, v string) error { return setBool(&c.InsecureHTTP, v) }},
	{name: "debug-errors", env: "BASTION_DEBUG_ERRORS", def: "false", isBool: true, usage: "include internal error causes in 500 answers",
		set: func(c *Config, v string) error { return setBool(&c.DebugErrors, v) }},
	{name: "run-retention-days", env: "BASTION_RUN_RETENTION_DAYS", def: "180", fromDB: true, usage: "keep run history this many days (> 0)",
		set: func(c *Config, v string) error { return setInt(&c.RunRetentionDays, v, 1, 1<<30) }},
	{name: "audit-retention-days", env: "BASTION_AUDIT_RETENTION_DAYS", def: "180", fromDB: true, usage: "keep audit log entries this many days (> 0)",
		set: func(c *Config, v string) error { return setInt(&c.AuditRetentionDays, v, 1, 1<<30) }},
	{name: "incomplete-cleanup-days", env: "BASTION_INCOMPLETE_CLEANUP_DAYS", def: "7", fromDB: true, usage: "remove leftovers of failed runs after this many days (0 disables)",
		set: func(c *Config, v string) error { return setInt(&c.IncompleteCleanupDays, v, 0, 1<<30) }},
	{name: "hub-timezone", env: "BASTION_HUB_TIMEZONE", fromDB: true, usage: "IANA timezone for new jobs (default: the system zone, else UTC)",
		set: func(c *Config, v string) error {
			if v == "" || v == "Local" {
				return errors.New("must be an IANA timezone name such as Europe/Berlin")
			}
			if _, err := time.LoadLocation(v); err != nil {
				return fmt.Errorf("unknown timezone %q", v)
			}
			c.HubTimezone = v
			return nil
		}},
	{name: "public-base-url", env: "BASTION_PUBLIC_BASE_URL", fromDB: true, usage: "URL users reach the Hub at (links in notifications)",
		set: func(c *Config, v string) error {
			n, err := NormalizePublicBaseURL(v)
			c.PublicBaseURL = n
			return err
		}},
	{name: "trusted-proxy", env: "BASTION_TRUSTED_PROXIES", usage: "CIDR of a reverse proxy whose X-Forwarded-* headers are believed (repeatable; env: comma list)",
		set: func(c *Config, v string) error { return addProxies(c, v) }},
	{name: "allowed-host", env: "BASTION_ALLOWED_HOSTS", usage: "a host name the Hub answers to besides localhost, IP addresses and the public URL's host (repeatable; env: comma list)",
		set: func(c *Config, v string) error { return addHosts(c, v) }},
	{name: "body-read-timeout", env: "BASTION_BODY_READ_TIMEOUT", def: "60s", usage: "how long a client may take to send an API request body",
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < time.Second {
				return errors.New("must be a duration of at least 1s, such as 60s")
			}
			c.BodyReadTimeout = d
			return nil
		}},
	{name: "log", env: "BASTION_LOG", envAlt: "RUST_LOG", def: "info", fromDB: true, usage: "log level: trace, debug, info, warn, error",
		set: func(c *Config, v string) error { c.Log = v; return nil }},
	{name: "log-format", env: "BASTION_LOG_FORMAT", def: "auto", usage: "log format on stderr: auto (console on a terminal, JSON otherwise), console, json",
		set: func(c *Config, v string) error {
			switch v {
			case "auto", "console", "json":
				c.LogFormat = v
				return nil
			}
			return errors.New("must be auto, console or json")
		}},
	{name: "log-file", env: "BASTION_LOG_FILE", fromDB: true, usage: "also write JSON logs to this file, rotated",
		set: func(c *Config, v string) error { c.LogFile = v; return nil }},
	{name: "log-rotation", env: "BASTION_LOG_ROTATION", def: "daily", fromDB: true, usage: "log file rotation: never, hourly, daily",
		set: func(c *Config, v string) error {
			switch v {
			case "never", "hourly", "daily":
				c.LogRotation = v
				return nil
			}
			return errors.New("must be never, hourly or daily")
		}},
	{name: "log-keep-files", env: "BASTION_LOG_KEEP_FILES", def: "30", fromDB: true, usage: "rotated log files to keep",
		set: func(c *Config, v string) error { return setInt(&c.LogKeepFiles, v, 1, 100000) }},
	{name: "db-busy-timeout", env: "BASTION_DB_BUSY_TIMEOUT", def: "5s", usage: "how long SQLite waits for a lock held by another process",
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return errors.New("must be a positive duration such as 5s")
			}
			c.DBBusyTimeout = d
			return nil
		}},
	{name: "run-concurrency", env: "BASTION_RUN_CONCURRENCY", def: "2", usage: "runs executed at once on the Hub",
		set: func(c *Config, v string) error { return setInt(&c.RunConcurrency, v, 1, 64) }},
	{name: "entries-cache-max-bytes", env: "BASTION_ENTRIES_CACHE_MAX_BYTES", def: "1GiB", usage: "size bound of the restore picker's snapshot index cache (cache/entries), least recently used indexes go first; bytes, or with KiB, MiB, GiB, TiB",
		set: func(c *Config, v string) error {
			n, err := ParseBytes(v)
			c.EntriesCacheMaxBytes = n
			return err
		}},
	{name: "drills-per-target", env: "BASTION_DRILLS_PER_TARGET", def: "1", usage: "restore drills reading one target at once",
		set: func(c *Config, v string) error { return setInt(&c.DrillsPerTarget, v, 1, 64) }},
	{name: "metrics-public", env: "BASTION_METRICS_PUBLIC", def: "false", isBool: true, usage: "serve GET /metrics without an API token (a scraper on this machine or behind the reverse proxy)",
		set: func(c *Config, v string) error { return setBool(&c.MetricsPublic, v) }},
}

// MinEntriesCacheBytes is the smallest --entries-cache-max-bytes accepted.
const MinEntriesCacheBytes = 1 << 20

// ParseBytes reads a size of at least MinEntriesCacheBytes: a whole number of bytes, or one
// followed by KiB, MiB, GiB or TiB.
func ParseBytes(v string) (int64, error) {
	num, mult := strings.TrimSpace(v), int64(1)
	for i, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if n, ok := strings.CutSuffix(num, unit); ok {
			num, mult = strings.TrimSpace(n), int64(1)<<(10*(i+1))
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult || n*mult < MinEntriesCacheBytes {
		return 0, fmt.Errorf("must be a size of at least 1MiB, in bytes or with KiB, MiB, GiB or TiB (got %q)", v)
	}
	return n * mult, nil
}

// Load resolves flags (args) and the environment (getenv). db supplies the saved runtime config
// (settings key hub_runtime_config_v1) once the database is open; pass nil on the first pass.
func Load(args []string, getenv func(string) string, db map[string]string) (Config, error) {
	fs := flag.NewFlagSet("bastion", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cli := map[string][]string{}
	for _, o := range options {
		collect := func(v string) error { cli[o.name] = append(cli[o.name], v); return nil }
		if o.isBool {
			fs.BoolFunc(o.name, o.usage, collect)
		} else {
			fs.Func(o.name, o.usage, collect)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, err
		}
		return Config{}, fmt.Errorf("%w\n%s", err, Usage())
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), Usage())
	}
	c := Config{Sources: map[string]Source{}}
	for _, o := range options {
		var vals []string
		var src Source
		switch {
		case len(cli[o.name]) > 0:
			vals, src = cli[o.name], SourceCLI
		case getenv(o.env) != "":
			vals, src = []string{getenv(o.env)}, SourceEnv
			if o.name == "trusted-proxy" || o.name == "allowed-host" {
				vals = strings.Split(getenv(o.env), ",")
			}
		case o.envAlt != "" && getenv(o.envAlt) != "":
			vals, src = []string{getenv(o.envAlt)}, SourceEnv
		case o.fromDB && db[o.name] != "":
			vals, src = []string{db[o.name]}, SourceDB
		case o.def != "":
			vals, src = []string{o.def}, SourceDefault
		default:
			continue
		}
		for _, v := range vals {
			if err := o.set(&c, strings.TrimSpace(v)); err != nil {
				return Config{}, fmt.Errorf("--%s (%s from %s): %w", o.name, o.env, src, err)
			}
		}
		c.Sources[o.name] = src
	}
	if len(c.TrustedProxies) == 0 {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
		c.Sources["trusted-proxy"] = SourceDefault
	}
	if c.HubTimezone == "" {
		c.HubTimezone = systemTimezone(getenv)
		c.Sources["hub-timezone"] = SourceDefault
	}
	c.UIDir = getenv("BASTION_UI_DIR")
	return c, nil
}

// DBOptionNames are the options the saved runtime config may supply.
func DBOptionNames() []string {
	var out []string
	for _, o := range options {
		if o.fromDB {
			out = append(out, o.name)
		}
	}
	return out
}

// Usage lists every flag with its environment variable and default.
func Usage() string {
	var b strings.Builder
	b.WriteString("Usage: bastion [hub] [flags]\n       bastion agent|config|keypack ...\n\nFlags (each also read from its environment variable):\n")
	for _, o := range options {
		def := ""
		if o.def != "" {
			def = " (default " + o.def + ")"
		}
		fmt.Fprintf(&b, "  --%-24s %s: %s%s\n", o.name, o.env, o.usage, def)
	}
	return b.String()
}

// NormalizePublicBaseURL checks an http(s) URL with a host and no query, fragment or userinfo,
// and drops a trailing slash.
func NormalizePublicBaseURL(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("must be an http or https URL with a host")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", errors.New("must not have a query, fragment or user name")
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func addProxies(c *Config, v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return fmt.Errorf("%q is not an IP address or CIDR", part)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, p.Masked())
	}
	return nil
}

// addHosts adds host names (a comma list is accepted too). A name is a DNS name or an IP
// address, without scheme, port or path; it is compared case-insensitively.
func addHosts(c *Config, v string) error {
	for _, part := range strings.Split(v, ",") {
		h := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(part), "."))
		if h == "" {
			continue
		}
		if strings.ContainsAny(h, "/:@ *") && !isIP(h) {
			return fmt.Errorf("%q is not a host name: give the name alone, without scheme, port or path", part)
		}
		c.AllowedHosts = append(c.AllowedHosts, h)
	}
	return nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}

func setInt(dst *int, v string, min, max int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		return fmt.Errorf("must be a whole number from %d to %d", min, max)
	}
	*dst = n
	return nil
}

func setBool(dst *bool, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("must be true or false")
	}
	*dst = b
	return nil
}

// systemTimezone finds the host's IANA zone: $TZ, then /etc/timezone, then the /etc/localtime
// symlink; UTC when none names a loadable zone.
func systemTimezone(getenv func(string) string) string {
	cands := []string{strings.TrimPrefix(getenv("TZ"), ":")}
	if b, err := os.ReadFile("/etc/timezone"); err == nil {
		cands = append(cands, strings.TrimSpace(string(b)))
	}
	if target, err := os.Readlink("/etc/localtime"); err == nil {
		if _, after, ok := strings.Cut(filepath.ToSlash(target), "zoneinfo/"); ok {
			cands = append(cands, after)
		}
	}
	for _, c := range cands {
		if c == "" || c == "Local" {
			continue
		}
		if _, err := time.LoadLocation(c); err == nil {
			return c
		}
	}
	return "UTC"
}

// ResolveDataDir picks the data directory: the configured one, else <exe_dir>/data when that is
// writable, else the user's data directory.
func ResolveDataDir(configured string) (string, error) {
	if configured != "" {
		return filepath.Abs(configured)
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Join(filepath.Dir(exe), "data")
		if writable(dir) {
			return dir, nil
		}
	}
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find a data directory: %w", err)
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "bastion"), nil
}

// FindDataDir is ResolveDataDir for tools that must not create anything (bastion doctor): the
// configured directory, else <exe_dir>/data when it exists, else the user's data directory.
func FindDataDir(configured string) (string, error) {
	if configured != "" {
		return filepath.Abs(configured)
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Join(filepath.Dir(exe), "data")
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir, nil
		}
	}
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find a data directory: %w", err)
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "bastion"), nil
}

// writable proves a directory can be written by creating and removing a file in it.
func writable(dir string) bool {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	return os.Remove(name) == nil
}

// Print writes the effective configuration with sources, as text or JSON.
func Print(w io.Writer, c Config, asJSON bool) error {
	type entry struct {
		Value  any    `json:"value"`
		Source Source `json:"source"`
	}
	proxies := make([]string, len(c.TrustedProxies))
	for i, p := range c.TrustedProxies {
		proxies[i] = p.String()
	}
	vals := map[string]any{
		"host": c.Host, "port": c.Port, "data-dir": c.DataDir, "insecure-http": c.InsecureHTTP,
		"debug-errors": c.DebugErrors, "run-retention-days": c.RunRetentionDays,
		"audit-retention-days":    c.AuditRetentionDays,
		"incomplete-cleanup-days": c.IncompleteCleanupDays, "hub-timezone": c.HubTimezone,
		"public-base-url": c.PublicBaseURL, "trusted-proxy": proxies, "allowed-host": append([]string{}, c.AllowedHosts...),
		"body-read-timeout": c.BodyReadTimeout.String(), "log": c.Log, "log-format": c.LogFormat, "log-file": c.LogFile,
		"log-rotation": c.LogRotation, "log-keep-files": c.LogKeepFiles, "db-busy-timeout": c.DBBusyTimeout.String(),
		"run-concurrency": c.RunConcurrency, "entries-cache-max-bytes": c.EntriesCacheMaxBytes,
		"drills-per-target": c.DrillsPerTarget, "metrics-public": c.MetricsPublic,
	}
	out := map[string]entry{}
	for _, o := range options {
		src, ok := c.Sources[o.name]
		if !ok {
			src = SourceDefault
		}
		out[o.name] = entry{vals[o.name], src}
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, o := range options {
		e := out[o.name]
		if _, err := fmt.Fprintf(w, "%-24s %-8s %v\n", o.name, e.Source, e.Value); err != nil {
			return err
		}
	}
	return nil
}

// Describe gives an option's environment variable (with its alternative, "BASTION_LOG / RUST_LOG")
// and default; ok is false for an unknown name.
func Describe(name string) (env, def string, ok bool) {
	for _, o := range options {
		if o.name == name {
			env = o.env
			if o.envAlt != "" {
				env += " / " + o.envAlt
			}
			return env, o.def, true
		}
	}
	return "", "", false
}
