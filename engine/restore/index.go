package restore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/bastion-backup/bastion/engine/backup/format"
)

// A browse index is a SQLite file built once from a local entries.jsonl.zst, so that a page of
// the restore picker reads only the rows of one directory instead of decompressing and parsing
// the whole index (List). It answers exactly what List answers for the same options.
//
// Tables:
//   - node(id, parent, seg): one row per directory prefix that has children, keyed by its parent's
//     id and its last segment, so that deep hostile paths cost O(length), not O(length²) as full
//     parent paths would. The root ("") is id 0 and has no row.
//   - child(dir, name, kind, size, slash, isdir, lname): the children List would show for that
//     directory. A child implied by a deeper path has kind dir and size 0; a record of its own
//     replaces it, the last record of a name winning (as in List). slash marks a record whose
//     path ends in "/" (List keeps such a path as it is). lname is strings.ToLower(name) when it
//     differs from name: SQLite's lower() only folds ASCII.
//   - meta(k, v): format version, the source file's size, and "complete", written last.
//
// Names and segments are BLOBs so that comparisons are bytewise (as strings.Compare) whatever
// the bytes are.
const (
	indexVersion = 1
	// nodeCacheDepth bounds the ids of the previous path's directories kept in memory while
	// building; deeper directories (only hostile data has them) are looked up in the file.
	nodeCacheDepth = 4096
	// buildCacheKiB is SQLite's page cache while building and querying (kibibytes).
	buildCacheKiB = 16 << 10
)

// ErrIndexInvalid is returned by OpenIndex for an index that is missing, of another version,
// built from another source file, incomplete or unreadable: the caller rebuilds it.
var ErrIndexInvalid = errors.New("browse index missing or invalid")

// Index is an open browse index. Safe for concurrent use; Close it after use.
type Index struct {
	db *sql.DB
}

func indexURI(path, params string) string {
	u := url.URL{Path: path}
	return "file:" + u.EscapedPath() + "?" + params
}

// OpenIndex opens the browse index at path, checking that it is complete and was built from a
// source of sourceSize bytes; otherwise it returns an error wrapping ErrIndexInvalid. The file
// is opened read-only and immutable: once renamed into place an index never changes, and a
// file removed while open stays readable through its descriptor.
func OpenIndex(ctx context.Context, path string, sourceSize int64) (*Index, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIndexInvalid, err)
	}
	db, err := sql.Open("sqlite3", indexURI(path, "mode=ro&immutable=1&_query_only=1"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIndexInvalid, err)
	}
	// One connection, opened now: it holds the file's descriptor from here on.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	ix := &Index{db: db}
	if err := ix.check(ctx, sourceSize); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %w", ErrIndexInvalid, err)
	}
	return ix, nil
}

func (ix *Index) check(ctx context.Context, sourceSize int64) error {
	rows, err := ix.db.QueryContext(ctx, "SELECT k, v FROM meta")
	if err != nil {
		return err
	}
	defer rows.Close()
	meta := map[string]int64{}
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		meta[k] = v
	}
	if err := rows.Err(); err != nil {
		return err
	}
	switch {
	case meta["version"] != indexVersion:
		return fmt.Errorf("version %d, want %d", meta["version"], indexVersion)
	case meta["complete"] != 1:
		return errors.New("incomplete")
	case sourceSize >= 0 && meta["source_size"] != sourceSize:
		return fmt.Errorf("built from %d bytes, the source has %d", meta["source_size"], sourceSize)
	}
	return nil
}

// Close releases the index.
func (ix *Index) Close() error { return ix.db.Close() }

// BuildIndex builds the browse index of the local entries.jsonl.zst at src into dst, which must
// not be in use: the caller builds into a temporary name and renames it into place, so that a
// crash never leaves a partial index under the final name. Memory stays bounded whatever the
// number of entries: rows go to SQLite in one transaction, the order index is created after the
// bulk insert. A line List cannot read (bad JSON, too long) fails the build with List's error.
func BuildIndex(ctx context.Context, src, dst string) (err error) {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("build browse index: %w", err)
	}
	for _, p := range []string{dst, dst + "-journal", dst + "-wal", dst + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("build browse index: %w", err)
		}
	}
	db, err := sql.Open("sqlite3", indexURI(dst, "mode=rwc&_journal_mode=OFF&_synchronous=OFF&_locking_mode=EXCLUSIVE"))
	if err != nil {
		return fmt.Errorf("build browse index: %w", err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("build browse index: %w", cerr)
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("build browse index: %w", err)
	}
	defer conn.Close()
	for _, q := range []string{
		"PRAGMA cache_size = -" + strconv.Itoa(buildCacheKiB),
		"PRAGMA temp_store = FILE",
		`CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)`,
		`CREATE TABLE node (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL, seg BLOB NOT NULL)`,
		`CREATE UNIQUE INDEX node_key ON node (parent, seg)`,
		`CREATE TABLE child (dir INTEGER NOT NULL, name BLOB NOT NULL, kind TEXT NOT NULL,
			size INTEGER NOT NULL, slash INTEGER NOT NULL, isdir INTEGER NOT NULL, lname BLOB,
			PRIMARY KEY (dir, name)) WITHOUT ROWID`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("build browse index: %w", err)
		}
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("build browse index: %w", err)
	}
	defer tx.Rollback()
	b, err := newIndexBuilder(ctx, tx)
	if err != nil {
		return fmt.Errorf("build browse index: %w", err)
	}
	defer b.close()
	n, err := b.addAll(ctx, src)
	if err != nil {
		return err
	}
	if err := b.flush(); err != nil {
		return err
	}
	for _, q := range []string{
		`CREATE INDEX child_order ON child (dir, isdir, name)`,
		fmt.Sprintf(`INSERT INTO meta (k, v) VALUES ('version', %d), ('source_size', %d), ('entries', %d), ('complete', 1)`,
			indexVersion, fi.Size(), n),
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("build browse index: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("build browse index: %w", err)
	}
	return nil
}

// errStopScan ends a scan whose entries are no longer wanted.
var errStopScan = errors.New("scan stopped")

// addAll adds the entries of src, decoding them on another goroutine while rows are written
// (decoding is half the work), in small batches so that memory stays bounded. A line List
// cannot read fails it with List's error.
func (b *indexBuilder) addAll(ctx context.Context, src string) (int, error) {
	batches := make(chan []format.Entry, 2)
	stop, stopped := make(chan struct{}), false
	var scanErr error
	go func() {
		defer close(batches)
		batch := make([]format.Entry, 0, 256)
		send := func() error {
			select {
			case batches <- batch:
				batch = make([]format.Entry, 0, 256)
				return nil
			case <-stop:
				return errStopScan
			}
		}
		scanErr = scanIndex(src, func(e format.Entry) error {
			if batch = append(batch, e); len(batch) == cap(batch) {
				return send()
			}
			return nil
		})
		if scanErr == nil && len(batch) > 0 {
			scanErr = send()
		}
	}()
	n := 0
	var err error
	for batch := range batches {
		if err == nil {
			err = ctx.Err()
		}
		for _, e := range batch {
			if err != nil {
				break
			}
			err = b.add(e)
			n++
		}
		if err != nil && !stopped {
			close(stop) // then drain, so the scanner ends before the file closes
			stopped = true
		}
	}
	if err != nil {
		return n, err
	}
	return n, scanErr // scanIndex's error, as List reports it
}

// indexBuilder turns entries into node and child rows.
type indexBuilder struct {
	ctx                  context.Context
	getNode, addNode     *sql.Stmt
	records, impliedRows *rowBatch
	nextNode             int64
	prev                 string  // previous entry's path
	chain                []int64 // ids of prev's directories, by depth
}

// batchRows is how many child rows go to SQLite in one statement: one call per row would cost
// more than SQLite's own work.
const batchRows = 128

// rowBatch inserts rows batchRows at a time with one multi-row statement. Rows go in the order
// they were added, so a later record of a name still replaces an earlier one.
type rowBatch struct {
	tx         *sql.Tx
	head, tail string
	row        string // "(?, ?, …)"
	full       *sql.Stmt
	args       []any
	rows       int
}

func newRowBatch(ctx context.Context, tx *sql.Tx, head, row, tail string) (*rowBatch, error) {
	rb := &rowBatch{tx: tx, head: head, row: row, tail: tail}
	var err error
	rb.full, err = tx.PrepareContext(ctx, rb.query(batchRows))
	return rb, err
}

func (rb *rowBatch) query(rows int) string {
	return rb.head + strings.Repeat(rb.row+",", rows-1) + rb.row + rb.tail
}

func (rb *rowBatch) add(ctx context.Context, vals ...any) error {
	rb.args = append(rb.args, vals...)
	if rb.rows++; rb.rows < batchRows {
		return nil
	}
	_, err := rb.full.ExecContext(ctx, rb.args...)
	rb.args, rb.rows = rb.args[:0], 0
	return err
}

func (rb *rowBatch) flush(ctx context.Context) error {
	if rb.rows == 0 {
		return nil
	}
	_, err := rb.tx.ExecContext(ctx, rb.query(rb.rows), rb.args...)
	rb.args, rb.rows = rb.args[:0], 0
	return err
}

func newIndexBuilder(ctx context.Context, tx *sql.Tx) (*indexBuilder, error) {
	b := &indexBuilder{ctx: ctx, nextNode: 1}
	var err error
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var s *sql.Stmt
		s, err = tx.PrepareContext(ctx, q)
		return s
	}
	b.getNode = prep(`SELECT id FROM node WHERE parent = ? AND seg = ?`)
	b.addNode = prep(`INSERT INTO node (id, parent, seg) VALUES (?, ?, ?)`)
	if err == nil {
		// A record of its own replaces what was there (an implied directory or an earlier
		// record of the same name).
		b.records, err = newRowBatch(ctx, tx, `INSERT INTO child (dir, name, kind, size, slash, isdir, lname) VALUES `,
			`(?, ?, ?, ?, ?, ?, ?)`, ` ON CONFLICT (dir, name) DO UPDATE SET kind = excluded.kind, size = excluded.size,
			slash = excluded.slash, isdir = excluded.isdir`)
	}
	if err == nil {
		// A directory implied by a deeper path never replaces anything, so these rows may go
		// before or after records of the same name: the result is the same.
		b.impliedRows, err = newRowBatch(ctx, tx, `INSERT INTO child (dir, name, kind, size, slash, isdir, lname) VALUES `,
			`(?, ?, 'dir', 0, 0, 1, ?)`, ` ON CONFLICT (dir, name) DO NOTHING`)
	}
	if err != nil {
		b.close()
	}
	return b, err
}

func (b *indexBuilder) flush() error {
	if err := b.records.flush(b.ctx); err != nil {
		return fmt.Errorf("build browse index: %w", err)
	}
	if err := b.impliedRows.flush(b.ctx); err != nil {
		return fmt.Errorf("build browse index: %w", err)
	}
	return nil
}

func (b *indexBuilder) close() {
	stmts := []*sql.Stmt{b.getNode, b.addNode}
	for _, rb := range []*rowBatch{b.records, b.impliedRows} {
		if rb != nil {
			stmts = append(stmts, rb.full)
		}
	}
	for _, s := range stmts {
		if s != nil {
			s.Close()
		}
	}
}

// add records what entry e contributes to List's answer for every directory prefix: for the root
// and for each "/" in e.Path (the directory being the path before it), List takes the rest of
// the path after the directory, cuts it at its first "/" into name and deeper, skips an empty
// name, and records e itself when deeper is empty or an implied directory otherwise.
func (b *indexBuilder) add(e format.Entry) error {
	p := e.Path
	// A path starting with "/" has an empty first name, and every directory of it starts with
	// "/", which no normalized prefix does: List never shows it.
	if p == "" || p[0] == '/' {
		return nil
	}
	common := 0
	for common < len(p) && common < len(b.prev) && p[common] == b.prev[common] {
		common++
	}
	// chain[d] stays valid while the directory p[:slash d] is a common prefix of both paths.
	depth := 0      // directories of p seen so far
	dir := int64(0) // the directory of the current level: the root first
	start := 0      // where the rest after dir begins
	for {
		rest := p[start:]
		name, deeper, _ := strings.Cut(rest, "/")
		if name != "" {
			end := start + len(name) // p[end] is "/" when deeper names exist
			switch {
			case deeper == "":
				if err := b.put(dir, name, e, end < len(p)); err != nil {
					return err
				}
			case end < common:
				// prev has the same name in the same directory, so the row is there already.
			default:
				if err := b.implied(dir, name); err != nil {
					return err
				}
			}
		}
		slash := strings.IndexByte(rest, '/')
		if slash < 0 || start+slash+1 == len(p) {
			// No deeper directory, or only an empty rest after a trailing "/".
			b.chain = b.chain[:min(len(b.chain), depth)]
			b.prev = p
			return nil
		}
		at := start + slash // p[:at] is the next directory
		id, err := b.node(depth, dir, p[start:at], at < common)
		if err != nil {
			return err
		}
		dir, depth, start = id, depth+1, at+1
	}
}

// node returns the id of the directory at depth whose parent is parent and last segment seg,
// creating it when missing. shared says that prev had the same directory.
func (b *indexBuilder) node(depth int, parent int64, seg string, shared bool) (int64, error) {
	if shared && depth < len(b.chain) {
		return b.chain[depth], nil
	}
	if depth < len(b.chain) {
		b.chain = b.chain[:depth]
	}
	var id int64
	err := b.getNode.QueryRowContext(b.ctx, parent, []byte(seg)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		id = b.nextNode
		b.nextNode++
		_, err = b.addNode.ExecContext(b.ctx, id, parent, []byte(seg))
	}
	if err != nil {
		return 0, fmt.Errorf("build browse index: %w", err)
	}
	if depth == len(b.chain) && depth < nodeCacheDepth {
		b.chain = append(b.chain, id)
	}
	return id, nil
}

func (b *indexBuilder) lower(name string) []byte {
	l := strings.ToLower(name)
	if l == name {
		return nil
	}
	return []byte(l)
}

func (b *indexBuilder) put(dir int64, name string, e format.Entry, slash bool) error {
	if err := b.records.add(b.ctx, dir, []byte(name), e.Kind, e.Size, slash, e.Kind == format.KindDir, b.lower(name)); err != nil {
		return fmt.Errorf("build browse index: %w", err)
	}
	return nil
}

func (b *indexBuilder) implied(dir int64, name string) error {
	if err := b.impliedRows.add(b.ctx, dir, []byte(name), b.lower(name)); err != nil {
		return fmt.Errorf("build browse index: %w", err)
	}
	return nil
}

// List returns the page List(source, opts) would return.
func (ix *Index) List(ctx context.Context, opts ListOptions) (Page, error) {
	prefix, limit, offset, err := opts.page()
	if err != nil {
		return Page{}, err
	}
	page := Page{Prefix: prefix, Entries: []Child{}}
	dir, ok, err := ix.lookup(ctx, prefix)
	if err != nil || !ok {
		return page, err
	}
	where := []string{"dir = ?"}
	args := []any{dir}
	if opts.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, opts.Kind)
	}
	if opts.HideDotfiles {
		where = append(where, "substr(name, 1, 1) <> x'2e'")
	}
	if q := strings.ToLower(opts.Q); q != "" {
		where, args = append(where, "instr(coalesce(lname, name), ?) > 0"), append(args, []byte(q))
	}
	if opts.MinSize != nil {
		where, args = append(where, "NOT (kind = 'file' AND size < ?)"), append(args, *opts.MinSize)
	}
	if opts.MaxSize != nil {
		where, args = append(where, "NOT (kind = 'file' AND size > ?)"), append(args, *opts.MaxSize)
	}
	cond := strings.Join(where, " AND ")
	var counts [2]int // by isdir
	rows, err := ix.db.QueryContext(ctx, "SELECT isdir, count(*) FROM child WHERE "+cond+" GROUP BY isdir", args...)
	if err != nil {
		return Page{}, fmt.Errorf("browse index: %w", err)
	}
	for rows.Next() {
		var isdir, n int
		if err := rows.Scan(&isdir, &n); err != nil {
			rows.Close()
			return Page{}, fmt.Errorf("browse index: %w", err)
		}
		counts[isdir&1] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("browse index: %w", err)
	}
	page.Total = counts[0] + counts[1]
	// Directories first unless FilesFirst; in each part by name, bytewise.
	parts := [2]int{1, 0}
	if opts.FilesFirst {
		parts = [2]int{0, 1}
	}
	skip, want := offset, limit
	for _, isdir := range parts {
		n := counts[isdir]
		if skip >= n {
			skip -= n
			continue
		}
		if want == 0 {
			break
		}
		got, err := ix.children(ctx, prefix, cond, append(args, isdir, min(want, n-skip), skip), &page.Entries)
		if err != nil {
			return Page{}, err
		}
		want -= got
		skip = 0
	}
	if end := offset + len(page.Entries); end < page.Total && len(page.Entries) > 0 {
		page.NextCursor = strconv.Itoa(end)
	}
	return page, nil
}

func (ix *Index) children(ctx context.Context, prefix, cond string, args []any, out *[]Child) (int, error) {
	rows, err := ix.db.QueryContext(ctx, "SELECT name, kind, size, slash FROM child WHERE "+cond+
		" AND isdir = ? ORDER BY name LIMIT ? OFFSET ?", args...)
	if err != nil {
		return 0, fmt.Errorf("browse index: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var name []byte
		var c Child
		var slash bool
		if err := rows.Scan(&name, &c.Kind, &c.Size, &slash); err != nil {
			return n, fmt.Errorf("browse index: %w", err)
		}
		c.Name = string(name)
		c.Path = joinPath(prefix, c.Name)
		if slash {
			c.Path += "/"
		}
		*out = append(*out, c)
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("browse index: %w", err)
	}
	return n, nil
}

// lookup finds the node of a normalized prefix; ok is false when no entry lies below it.
func (ix *Index) lookup(ctx context.Context, prefix string) (int64, bool, error) {
	if prefix == "" {
		return 0, true, nil
	}
	id := int64(0)
	for seg := range strings.SplitSeq(prefix, "/") {
		err := ix.db.QueryRowContext(ctx, "SELECT id FROM node WHERE parent = ? AND seg = ?", id, []byte(seg)).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("browse index: %w", err)
		}
	}
	return id, true, nil
}
