// Package storage owns the Hub's SQLite database: opening it with settings that never surface
// "database is locked", applying migrations, and the repositories the rest of the Hub uses.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/rs/zerolog"
)

// ErrNotFound is returned by repositories when the row asked for does not exist.
var ErrNotFound = errors.New("not found")

// Options configure Open. Zero values take the documented defaults.
type Options struct {
	// BusyTimeout is how long a connection waits for a lock held by another process (a backup
	// tool, the sqlite3 shell) before failing. Writers inside this process never contend with each
	// other: they share one connection. Default 5 s.
	BusyTimeout time.Duration
	// Readers is the size of the read-only pool. Default 4: reads are short, WAL lets them run
	// beside the writer, and each connection keeps its own page cache, so more costs memory for
	// little gain on a 2-core host.
	Readers int
	Logger  zerolog.Logger
}

// DB is the Hub database: one writer connection and a small pool of read-only connections.
//
// Why one writer: SQLite allows one writer at a time. With several writer connections, a
// transaction that begins deferred and later upgrades to a write gets SQLITE_BUSY at once,
// whatever the busy timeout; that is where "database is locked" comes from. Funnelling every
// write through one connection whose transactions BEGIN IMMEDIATE turns contention into a wait
// for the connection (bounded by the caller's context), never an error.
type DB struct {
	w, r *sql.DB
	path string
	log  zerolog.Logger
	// locked counts transactions (Write, Read) that failed with SQLITE_BUSY or SQLITE_LOCKED:
	// another process held the file past the busy timeout. Metrics report it.
	locked atomic.Uint64
}

// Open opens (creating if needed) the database file at path and applies pending migrations.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	// The database holds password hashes and encrypted secrets: create it readable by its owner
	// only. SQLite gives its -wal and -shm files the permissions of the database file.
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("create database file: %w", err)
	} else {
		f.Close()
	}
	busyMS := opts.BusyTimeout.Milliseconds()

	w, err := sql.Open("sqlite3", dsn(path, url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"}, // with WAL: durable across application crashes, fsync only at checkpoints
		"_foreign_keys": {"1"},
		"_busy_timeout": {fmt.Sprint(busyMS)},
		"_txlock":       {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("open database writer: %w", err)
	}
	// Exactly one connection, kept forever: it is the write lock (see DB), and recycling it would
	// only throw away its prepared statements and page cache.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	db := &DB{w: w, path: path, log: opts.Logger}
	if err := db.ping(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	if err := migrate(ctx, w, opts.Logger); err != nil {
		w.Close()
		return nil, err
	}

	// Readers open after the writer has put the file in WAL mode: a read-only connection cannot
	// change the journal mode, and in WAL mode it never blocks the writer or is blocked by it.
	r, err := sql.Open("sqlite3", dsn(path, url.Values{
		"mode":          {"ro"},
		"_foreign_keys": {"1"},
		"_busy_timeout": {fmt.Sprint(busyMS)},
		"_query_only":   {"1"},
	}))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open database readers: %w", err)
	}
	// All readers may stay idle: an idle WAL reader holds no lock. Connections idle for 10 minutes
	// are closed to give their page cache back on a quiet Hub; none is recycled by age.
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(10 * time.Minute)
	if err := db.ping(ctx, r); err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	db.r = r
	return db, nil
}

func dsn(path string, q url.Values) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

func (db *DB) ping(ctx context.Context, pool *sql.DB) error {
	if err := pool.PingContext(ctx); err != nil {
		return fmt.Errorf("open database %s: %w", db.path, err)
	}
	return nil
}

// Path is the database file.
func (db *DB) Path() string { return db.path }

// Close checkpoints the WAL into the main file and closes both pools.
//
// No PRAGMA optimize (nor ANALYZE) here or anywhere: statistics gathered while tables are small
// ("2 runs per job") stay until the next analysis and make the planner scan tables that have
// since grown to thousands of rows. Without statistics, SQLite assumes large tables and uses the
// indexes every hot query was written for (queryplan_test.go checks exactly those plans).
func (db *DB) Close() error {
	if _, err := db.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		db.log.Warn().Err(err).Msg("checkpoint on close")
	}
	return errors.Join(db.r.Close(), db.w.Close())
}

// Ping checks that the database file answers a query; /api/ready uses it. It reads the schema
// on the reader pool — never the writer, where a probe would queue behind real writes and turn a
// long transaction into a "not ready" answer.
func (db *DB) Ping(ctx context.Context) error {
	var n int
	if err := db.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// Write runs fn in a write transaction (BEGIN IMMEDIATE on the writer connection) and commits
// it when fn returns nil. Keep fn short and free of network or disk I/O outside SQLite: every
// other writer waits for it. Never call Write, or Writer(), from inside fn: the one connection is
// already taken, so that would wait forever.
func (db *DB) Write(ctx context.Context, fn func(q Q) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		db.countLocked(err)
		return fmt.Errorf("begin write: %w", err)
	}
	// A panic in fn must not leave the one writer connection inside an open transaction: every
	// other writer would wait for it until the caller's context ends.
	defer func() {
		if v := recover(); v != nil {
			_ = tx.Rollback()
			panic(v)
		}
	}()
	if err := fn(Q{tx}); err != nil {
		_ = tx.Rollback()
		db.countLocked(err)
		return err
	}
	if err := tx.Commit(); err != nil {
		db.countLocked(err)
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Read runs fn in a read transaction on the reader pool: every query in fn sees one snapshot.
func (db *DB) Read(ctx context.Context, fn func(q Q) error) error {
	tx, err := db.r.BeginTx(ctx, nil)
	if err != nil {
		db.countLocked(err)
		return fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to commit
	err = fn(Q{tx})
	db.countLocked(err)
	return err
}

func (db *DB) countLocked(err error) {
	if err != nil && IsLocked(err) {
		db.locked.Add(1)
	}
}

// PoolStats is how the database connections have been waited for, for metrics.
type PoolStats struct {
	// Writer is the one writer connection: WaitCount and WaitDuration are the writes that queued
	// behind another write in this process (the busy waits of this design, see DB).
	Writer sql.DBStats
	// Readers is the read-only pool.
	Readers sql.DBStats
	// LockedErrors counts transactions that failed with "database is locked": another process
	// held the file longer than the busy timeout.
	LockedErrors uint64
}

// Stats reports the connection pools' waits and the lock errors seen so far.
func (db *DB) Stats() PoolStats {
	return PoolStats{Writer: db.w.Stats(), Readers: db.r.Stats(), LockedErrors: db.locked.Load()}
}

// Reader runs single statements on the read-only pool.
func (db *DB) Reader() Q { return Q{db.r} }

// Writer runs single statements in autocommit on the writer connection. See Write for the rule
// about nesting.
func (db *DB) Writer() Q { return Q{db.w} }

// Q runs queries on a pool or inside a transaction. Repositories are methods on Q so that the same
// code serves a single statement and a multi-table transaction.
type Q struct{ ex execer }

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Exec, Query and QueryRow give repositories outside this package (and tests) the raw statements.
func (q Q) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return q.ex.ExecContext(ctx, query, args...)
}

func (q Q) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return q.ex.QueryContext(ctx, query, args...)
}

func (q Q) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return q.ex.QueryRowContext(ctx, query, args...)
}

// IsLocked reports whether err is SQLITE_BUSY or SQLITE_LOCKED ("database is locked").
func IsLocked(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// queryStrings runs a query of one text column and returns its values; what names the query in
// errors.
func (q Q) queryStrings(ctx context.Context, what, query string, args ...any) ([]string, error) {
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
