// Package doctor checks a Hub data directory and says what is wrong and how to fix it. It never
// modifies the data directory: the database is opened read-only and never migrated, and
// master.key is only read.
package doctor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/storage"
)

// Status of one check.
type Status string

const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Check is one finding. Fix is set for WARN and FAIL.
type Check struct {
	Name    string `json:"name"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

// Report is every check; OK is false when any check failed.
type Report struct {
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// DiskUsage reports the free (available to unprivileged users) and total bytes of the filesystem
// holding path.
type DiskUsage func(path string) (free, total uint64, err error)

// Options configure Run. Zero values take the defaults.
type Options struct {
	DataDir string
	Now     time.Time // time.Now() when zero
	Disk    DiskUsage // statfs when nil
	// MinFreeBytes and MinFreeFraction: below either, free disk space is a warning.
	MinFreeBytes    uint64  // default 1 GiB
	MinFreeFraction float64 // default 0.05
	// ClockSlack is how far the clock may be behind the newest run's start before it counts as
	// gone backwards: small NTP corrections are normal. Default 1 minute.
	ClockSlack time.Duration
}

// DBFile is the database's name in the data directory.
const DBFile = "bastion.db"

// checkSample is how many secrets per key id are tried with master.key, as the Hub does at start.
const checkSample = 3

// Run runs every check against o.DataDir.
func Run(ctx context.Context, o Options) Report {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Disk == nil {
		o.Disk = diskUsage
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = 1 << 30
	}
	if o.MinFreeFraction == 0 {
		o.MinFreeFraction = 0.05
	}
	if o.ClockSlack == 0 {
		o.ClockSlack = time.Minute
	}
	r := &runner{o: o}
	r.run(ctx)
	rep := Report{OK: true, Checks: r.checks}
	for _, c := range r.checks {
		if c.Status == Fail {
			rep.OK = false
		}
	}
	return rep
}

type runner struct {
	o      Options
	checks []Check
}

func (r *runner) add(name string, st Status, msg, fix string) {
	r.checks = append(r.checks, Check{Name: name, Status: st, Message: msg, Fix: fix})
}

func (r *runner) run(ctx context.Context) {
	dir := r.o.DataDir
	if !r.checkDataDir(dir) {
		return // nothing else can be checked without the directory
	}
	db, ok := r.checkDatabase(ctx, filepath.Join(dir, DBFile))
	if db != nil {
		defer db.Close()
	}
	r.checkMasterKey(ctx, filepath.Join(dir, secrets.MasterKeyFile), db, ok)
	r.checkDisk(dir)
	if db != nil && ok {
		r.checkTargets(ctx, db, dir)
		r.checkClock(ctx, db)
	}
}

func (r *runner) checkDataDir(dir string) bool {
	const name = "data_dir"
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.add(name, Fail, fmt.Sprintf("%s does not exist", dir),
			"pass the Hub's data directory with --data-dir (or BASTION_DATA_DIR); the Hub creates it at its first start")
		return false
	case err != nil:
		r.add(name, Fail, fmt.Sprintf("cannot read %s: %v", dir, err), "run doctor as the user that runs the Hub")
		return false
	case !info.IsDir():
		r.add(name, Fail, fmt.Sprintf("%s is not a directory", dir), "point --data-dir at the Hub's data directory")
		return false
	}
	var problems, fixes []string
	if uid, ok := ownerUID(info); ok && uid != os.Getuid() {
		problems = append(problems, fmt.Sprintf("owned by uid %d, not the current user (uid %d)", uid, os.Getuid()))
		fixes = append(fixes, fmt.Sprintf("run doctor as the user that runs the Hub, or chown -R that user %s", dir))
	}
	if perm := info.Mode().Perm(); perm&0o007 != 0 {
		problems = append(problems, fmt.Sprintf("accessible to every user (mode %04o)", perm))
		fixes = append(fixes, "chmod 700 "+dir)
	}
	if len(problems) > 0 {
		r.add(name, Warn, dir+" is "+strings.Join(problems, " and "), strings.Join(fixes, "; "))
		return true
	}
	r.add(name, OK, fmt.Sprintf("%s (mode %04o)", dir, info.Mode().Perm()), "")
	return true
}

// checkDatabase opens the database read-only and runs the integrity and schema checks. ok is
// false when the database is missing or unreadable; db is then nil or unusable for queries.
func (r *runner) checkDatabase(ctx context.Context, path string) (*sql.DB, bool) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		r.add("database", OK, "no database yet: the Hub creates "+path+" at its first start", "")
		return nil, false
	}
	// mode=ro: doctor must never create, migrate or change the database, even while the Hub runs.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" +
		url.Values{"mode": {"ro"}, "_busy_timeout": {"5000"}, "_query_only": {"1"}}.Encode()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		r.add("database", Fail, fmt.Sprintf("open %s: %v", path, err), restoreDBFix)
		return nil, false
	}
	db.SetMaxOpenConns(1)
	var results []string
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err == nil {
		for rows.Next() {
			var s string
			if err = rows.Scan(&s); err != nil {
				break
			}
			results = append(results, s)
		}
		if err == nil {
			err = rows.Err()
		}
		rows.Close()
	}
	switch {
	case err != nil:
		r.add("database", Fail, fmt.Sprintf("%s cannot be read: %v", path, err), restoreDBFix)
		return db, false
	case len(results) != 1 || results[0] != "ok":
		if len(results) > 3 {
			results = append(results[:3], fmt.Sprintf("… %d more", len(results)-3))
		}
		r.add("database", Fail, fmt.Sprintf("%s is damaged: %s", path, strings.Join(results, "; ")), restoreDBFix)
		return db, false
	}
	r.add("database", OK, path+" passes the integrity check", "")
	r.checkSchema(ctx, db)
	return db, true
}

const restoreDBFix = "stop the Hub and restore bastion.db from a backup (or try: sqlite3 bastion.db '.recover' | sqlite3 recovered.db)"

func (r *runner) checkSchema(ctx context.Context, db *sql.DB) {
	const name = "schema"
	rows, err := db.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			r.add(name, OK, "empty database: the Hub creates the schema at its next start", "")
			return
		}
		r.add(name, Fail, fmt.Sprintf("read schema versions: %v", err), restoreDBFix)
		return
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			r.add(name, Fail, fmt.Sprintf("read schema versions: %v", err), restoreDBFix)
			return
		}
		applied[v] = true
	}
	known := storage.KnownSchemaVersions()
	isKnown := map[int]bool{}
	pending := 0
	for _, v := range known {
		isKnown[v] = true
		if !applied[v] {
			pending++
		}
	}
	newest := storage.SchemaVersion()
	var unknown []string
	dbNewest := 0
	for v := range applied {
		dbNewest = max(dbNewest, v)
		if !isKnown[v] {
			unknown = append(unknown, fmt.Sprint(v))
		}
	}
	switch {
	case len(unknown) > 0:
		r.add(name, Fail, fmt.Sprintf("the database has migrations this Bastion does not know (%s; this binary's newest is %d): it was written by a newer Bastion, and this one refuses to start",
			strings.Join(unknown, ", "), newest), "run the newer Bastion again, or restore a database backup made by this version")
	case pending > 0:
		r.add(name, OK, fmt.Sprintf("schema version %d, this binary's is %d: %d migrations will be applied at the next start (back up bastion.db first)",
			dbNewest, newest, pending), "")
	default:
		r.add(name, OK, fmt.Sprintf("schema version %d, up to date", newest), "")
	}
}

func (r *runner) checkMasterKey(ctx context.Context, path string, db *sql.DB, dbOK bool) {
	const name = "master_key"
	// Which key ids the stored secrets need; unknown when the database could not be read.
	kids := map[int64]int{}
	stored := 0
	if db != nil && dbOK {
		var err error
		if kids, err = secretKIDs(ctx, db); err != nil {
			r.add(name, Fail, err.Error(), restoreDBFix)
			return
		}
		for _, n := range kids {
			stored += n
		}
	}
	info, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && stored == 0:
		r.add(name, OK, "no master.key yet and no stored secrets: the Hub creates one at its next start (then back it up with bastion keypack export)", "")
		return
	case errors.Is(err, fs.ErrNotExist):
		r.add(name, Fail, fmt.Sprintf("%s is missing, but the database holds %d encrypted secrets; the Hub refuses to start", path, stored),
			"restore master.key from your backup: bastion keypack import --in <file>")
		return
	case err != nil:
		r.add(name, Fail, fmt.Sprintf("cannot read %s: %v", path, err), "run doctor as the user that runs the Hub")
		return
	case !info.Mode().IsRegular():
		r.add(name, Fail, path+" is not a regular file; the Hub refuses to start", "restore master.key from your backup: bastion keypack import --in <file> --force")
		return
	case info.Mode().Perm()&0o077 != 0:
		r.add(name, Fail, fmt.Sprintf("%s is accessible to other users (mode %04o); the Hub refuses to start", path, info.Mode().Perm()),
			"chmod 600 "+path)
		return
	}
	// ReadKeyringFile is the Hub's own loader: the same mode and format rules. Its errors name the
	// file and the problem, never key material.
	k, err := secrets.ReadKeyringFile(path)
	if err != nil {
		r.add(name, Fail, err.Error()+"; the Hub refuses to start", "restore master.key from your backup: bastion keypack import --in <file> --force")
		return
	}
	if db == nil || !dbOK {
		r.add(name, OK, fmt.Sprintf("%s is readable (key ids %v, active %d); not compared with the database", path, k.KIDs(), k.ActiveKID()), "")
		return
	}
	for kid, n := range kids {
		if kid <= 0 || kid > 1<<32-1 || !k.Has(uint32(kid)) {
			r.add(name, Fail, fmt.Sprintf("%s has no key id %d, which %d stored secrets were encrypted with; the Hub refuses to start", path, kid, n),
				"restore the master.key (or keypack) that belongs to this database: bastion keypack import --in <file> --force")
			return
		}
		opens, tried, err := anyOpens(ctx, db, k, kid)
		if err != nil {
			r.add(name, Fail, err.Error(), restoreDBFix)
			return
		}
		if !opens {
			r.add(name, Fail, fmt.Sprintf("%s does not decrypt the stored secrets of key id %d (tried %d): it is not the key this database was written with; the Hub refuses to start", path, kid, tried),
				"restore the master.key (or keypack) that belongs to this database: bastion keypack import --in <file> --force")
			return
		}
	}
	found := "no stored secrets yet"
	if stored > 0 {
		found = fmt.Sprintf("decrypts the stored secrets (%d)", stored)
	}
	r.add(name, OK, fmt.Sprintf("%s (mode %04o, key ids %v, active %d) %s", path, info.Mode().Perm(), k.KIDs(), k.ActiveKID(), found), "")
}

func secretKIDs(ctx context.Context, db *sql.DB) (map[int64]int, error) {
	rows, err := db.QueryContext(ctx, "SELECT kid, COUNT(*) FROM secrets GROUP BY kid")
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return map[int64]int{}, nil
		}
		return nil, fmt.Errorf("count secrets by key id: %w", err)
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var kid int64
		var n int
		if err := rows.Scan(&kid, &n); err != nil {
			return nil, fmt.Errorf("count secrets by key id: %w", err)
		}
		out[kid] = n
	}
	return out, rows.Err()
}

// anyOpens tries the most recent secrets of kid, as the Hub's start does (secrets.OpenKeyring).
func anyOpens(ctx context.Context, db *sql.DB, k *secrets.Keyring, kid int64) (bool, int, error) {
	rows, err := db.QueryContext(ctx, `SELECT node_id, kind, name, nonce, ciphertext FROM secrets
		WHERE kid = ? ORDER BY updated_at DESC LIMIT ?`, kid, checkSample)
	if err != nil {
		return false, 0, fmt.Errorf("read secrets of key id %d: %w", kid, err)
	}
	defer rows.Close()
	tried := 0
	for rows.Next() {
		var node, kind, name string
		var s secrets.Sealed
		if err := rows.Scan(&node, &kind, &name, &s.Nonce, &s.Ciphertext); err != nil {
			return false, tried, fmt.Errorf("read secrets of key id %d: %w", kid, err)
		}
		s.KID = uint32(kid)
		tried++
		if _, err := k.Open(node, kind, name, s); err == nil {
			return true, tried, nil
		}
	}
	return tried == 0, tried, rows.Err()
}

func (r *runner) checkDisk(dir string) {
	const name = "disk_space"
	free, total, err := r.o.Disk(dir)
	if err != nil {
		r.add(name, Warn, fmt.Sprintf("cannot read free space of %s: %v", dir, err), "check free space by hand: df -h "+dir)
		return
	}
	msg := fmt.Sprintf("%s free of %s on the data directory's filesystem", humanBytes(free), humanBytes(total))
	if free < r.o.MinFreeBytes || (total > 0 && float64(free) < r.o.MinFreeFraction*float64(total)) {
		r.add(name, Warn, msg+fmt.Sprintf(" (below %s or %.0f%%): the database, staging and restores need room",
			humanBytes(r.o.MinFreeBytes), r.o.MinFreeFraction*100),
			"free space on that filesystem, or move the data directory to a larger one")
		return
	}
	r.add(name, OK, msg, "")
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// checkTargets looks at the targets of the Hub's own active jobs. local_dir targets are checked on
// this machine; WebDAV targets are listed as not checked: doctor makes no network calls (and so
// sends no stored credential anywhere). Agent jobs' targets live on the agents.
func (r *runner) checkTargets(ctx context.Context, db *sql.DB, dataDir string) {
	rows, err := db.QueryContext(ctx, `SELECT id, name, spec_json FROM jobs
		WHERE archived_at IS NULL AND agent_id IS NULL ORDER BY name, id`)
	if err != nil {
		r.add("targets", Fail, fmt.Sprintf("list jobs: %v", err), restoreDBFix)
		return
	}
	type job struct{ id, name, spec string }
	var jobs []job
	for rows.Next() {
		var j job
		if err := rows.Scan(&j.id, &j.name, &j.spec); err != nil {
			rows.Close()
			r.add("targets", Fail, fmt.Sprintf("list jobs: %v", err), restoreDBFix)
			return
		}
		jobs = append(jobs, j)
	}
	rows.Close()
	if len(jobs) == 0 {
		r.add("targets", OK, "no active jobs run on the Hub", "")
		return
	}
	for _, j := range jobs {
		name := fmt.Sprintf("target %q", j.name)
		spec, err := jobspec.Parse([]byte(j.spec))
		if err != nil {
			r.add(name, Fail, fmt.Sprintf("job %s: the stored spec does not parse: %v", j.id, err), "edit the job in the web UI and save it again")
			continue
		}
		switch cfg := spec.Target.Config; {
		case cfg == nil:
			r.add(name, OK, fmt.Sprintf("target type %q not checked", spec.Target.Type), "")
		case cfg.Endpoint() != "":
			r.add(name, OK, fmt.Sprintf("%s %s not checked: doctor makes no network calls", cfg.Type(), cfg.Endpoint()), "")
		default:
			if lp, ok := cfg.(targets.LocalPath); ok {
				st, msg, fix := checkLocalDir(lp.LocalPath())
				r.add(name, st, msg, fix)
			} else {
				r.add(name, OK, fmt.Sprintf("target type %q not checked", spec.Target.Type), "")
			}
		}
	}
}

func checkLocalDir(base string) (Status, string, string) {
	info, err := os.Stat(base)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := base
		for {
			next := filepath.Dir(parent)
			if next == parent {
				break
			}
			parent = next
			if _, err := os.Stat(parent); err == nil {
				break
			}
		}
		if !writable(parent) {
			return Fail, fmt.Sprintf("local_dir %s does not exist, and %s is not writable: runs will fail", base, parent),
				fmt.Sprintf("create %s (mkdir -p) and give the user running the Hub write access, or mount the backup disk", base)
		}
		return Warn, fmt.Sprintf("local_dir %s does not exist; the next run creates it", base),
			fmt.Sprintf("if %s should be a mounted disk, mount it (otherwise backups fill the disk below it); else mkdir -p %s", base, base)
	case err != nil:
		return Fail, fmt.Sprintf("local_dir %s cannot be read: %v", base, err), "give the user running the Hub access to " + base
	case !info.IsDir():
		return Fail, fmt.Sprintf("local_dir %s is not a directory", base), "point the job's target at a directory"
	case !writable(base):
		return Fail, fmt.Sprintf("local_dir %s is not writable", base), "give the user running the Hub write access to " + base
	}
	return OK, fmt.Sprintf("local_dir %s exists and is writable", base), ""
}

// writable proves a directory can be written by creating and removing a file in it.
func writable(dir string) bool {
	f, err := os.CreateTemp(dir, ".bastion-doctor-*")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	return os.Remove(name) == nil
}

// checkClock compares the system time with the newest run's start: a clock behind it has gone
// backwards, which confuses schedules, retention and run ordering.
func (r *runner) checkClock(ctx context.Context, db *sql.DB) {
	const name = "clock"
	var newest sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT MAX(started_at) FROM runs").Scan(&newest); err != nil {
		if strings.Contains(err.Error(), "no such table") {
			r.add(name, OK, "no runs yet", "")
			return
		}
		r.add(name, Fail, fmt.Sprintf("read the newest run: %v", err), restoreDBFix)
		return
	}
	if !newest.Valid {
		r.add(name, OK, "no runs yet", "")
		return
	}
	last := time.Unix(newest.Int64, 0).UTC()
	now := r.o.Now.UTC()
	if now.Add(r.o.ClockSlack).Before(last) {
		r.add(name, Fail, fmt.Sprintf("system time %s is before the newest run's start %s: the clock went backwards",
			now.Format(time.RFC3339), last.Format(time.RFC3339)),
			"fix the system clock (enable NTP: timedatectl set-ntp true) before starting the Hub")
		return
	}
	r.add(name, OK, fmt.Sprintf("system time %s is after the newest run's start %s", now.Format(time.RFC3339), last.Format(time.RFC3339)), "")
}
