package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/mattn/go-sqlite3"
)

// sqliteURI builds a URI filename for mattn/go-sqlite3: the path escaped so '?' and '#' in a
// name cannot be taken for parameters.
func sqliteURI(path string, params string) string {
	u := url.URL{Path: path}
	return "file:" + u.EscapedPath() + "?" + params
}

// SnapshotSQLite copies the live database src to dst with SQLite's online backup API.
//
// The copy is made in one backup step (all pages), which runs inside one read transaction of
// src: the result is a consistent image of one committed state, and a writer in another
// process cannot make it restart forever (page-by-page steps restart whenever another
// connection writes). In WAL mode writers keep going meanwhile; in rollback mode they wait for
// the read lock (busy timeout). src is opened read-only and must exist.
func SnapshotSQLite(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("sqlite source: %w", err)
	}
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove old snapshot: %w", err)
	}
	srcDB, err := sql.Open("sqlite3", sqliteURI(src, "mode=ro&_busy_timeout=10000"))
	if err != nil {
		return fmt.Errorf("open sqlite source: %w", err)
	}
	defer srcDB.Close()
	dstDB, err := sql.Open("sqlite3", sqliteURI(dst, "mode=rwc&_busy_timeout=10000"))
	if err != nil {
		return fmt.Errorf("open sqlite snapshot: %w", err)
	}
	defer dstDB.Close()
	srcConn, err := srcDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect sqlite source: %w", err)
	}
	defer srcConn.Close()
	dstConn, err := dstDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect sqlite snapshot: %w", err)
	}
	defer dstConn.Close()
	err = dstConn.Raw(func(d any) error {
		return srcConn.Raw(func(s any) error {
			dc, ok1 := d.(*sqlite3.SQLiteConn)
			sc, ok2 := s.(*sqlite3.SQLiteConn)
			if !ok1 || !ok2 {
				return errors.New("sqlite driver is not mattn/go-sqlite3")
			}
			b, err := dc.Backup("main", sc, "main")
			if err != nil {
				return fmt.Errorf("start sqlite backup: %w", err)
			}
			for {
				done, err := b.Step(-1)
				if err != nil {
					_ = b.Close()
					return fmt.Errorf("sqlite backup step: %w", err)
				}
				if done {
					break
				}
				// Busy or locked: a writer holds the database. Wait a little and retry.
				t := time.NewTimer(10 * time.Millisecond)
				select {
				case <-ctx.Done():
					t.Stop()
					_ = b.Close()
					return ctx.Err()
				case <-t.C:
				}
			}
			if err := b.Close(); err != nil {
				return fmt.Errorf("finish sqlite backup: %w", err)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", src, err)
	}
	return nil
}

// IntegrityCheck is the result of PRAGMA integrity_check: OK when it answered exactly "ok".
type IntegrityCheck struct {
	OK    bool     `json:"ok"`
	Lines []string `json:"lines"` // at most maxIntegrityLines
}

const maxIntegrityLines = 64

// IntegrityCheckFile runs PRAGMA integrity_check on the database file at path.
func IntegrityCheckFile(ctx context.Context, path string) (IntegrityCheck, error) {
	db, err := sql.Open("sqlite3", sqliteURI(path, "mode=ro&_busy_timeout=10000"))
	if err != nil {
		return IntegrityCheck{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return IntegrityCheck{}, fmt.Errorf("integrity_check: %w", err)
	}
	defer rows.Close()
	var lines []string
	n := 0
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return IntegrityCheck{}, fmt.Errorf("integrity_check: %w", err)
		}
		n++
		if len(lines) < maxIntegrityLines {
			lines = append(lines, line)
		}
	}
	if err := rows.Err(); err != nil {
		return IntegrityCheck{Lines: []string{err.Error()}}, nil // a damaged file fails the check
	}
	return IntegrityCheck{OK: n == 1 && lines[0] == "ok", Lines: lines}, nil
}
