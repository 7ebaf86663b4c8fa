// Package fslist lists a directory the way the file browser needs it: filters, a stable sort and
// opaque cursors bound to that sort. The Hub uses it for its own disk and agents for theirs.
package fslist

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Limits.
const (
	DefaultLimit = 200
	MaxLimit     = 2000
)

// Error codes (the API's error codes).
const (
	CodeInvalidPath   = "invalid_path"
	CodeNotDirectory  = "not_directory"
	CodePathNotFound  = "path_not_found"
	CodePermission    = "permission_denied"
	CodeInvalidCursor = "invalid_cursor"
	CodeInvalidOption = "invalid_option"
)

// Error is a listing failure with an API code.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Options select, sort and page the entries. The zero value lists everything, unpaged.
type Options struct {
	Cursor       string
	Limit        int
	Q            string // case-insensitive substring of the name
	Kind         string // "", dir, file, symlink
	HideDotfiles bool
	TypeSort     string // "", dirs_first, files_first, none (dir_first, file_first: the original's)
	SortBy       string // name (default), mtime, size
	SortDir      string // asc (default), desc
	SizeMin      *int64
	SizeMax      *int64
	// Paged is true when any option was given; an unpaged request returns every entry.
	Paged bool
}

// Entry is one directory entry.
type Entry struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	Kind  string `json:"kind"` // dir | file | symlink | other
	Size  int64  `json:"size"`
	Mtime *int64 `json:"mtime"`
}

// Page is one page of a listing.
type Page struct {
	Entries    []Entry
	NextCursor string
	Total      int64
}

type cursor struct {
	Sort   string `json:"s"`
	Offset int    `json:"o"`
}

// List lists dir, which must be an absolute path to a directory.
func List(dir string, o Options) (Page, error) {
	if dir == "" || !filepath.IsAbs(dir) || strings.ContainsRune(dir, 0) {
		return Page{}, &Error{CodeInvalidPath, "path must be absolute"}
	}
	dir = filepath.Clean(dir)
	if err := o.normalize(); err != nil {
		return Page{}, err
	}
	offset, err := o.offset()
	if err != nil {
		return Page{}, err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return Page{}, fsError(err)
	}
	if !st.IsDir() {
		return Page{}, &Error{CodeNotDirectory, "path is not a directory"}
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return Page{}, fsError(err)
	}
	entries := make([]Entry, 0, len(des))
	for _, de := range des {
		e := Entry{Name: de.Name(), Path: filepath.Join(dir, de.Name()), Kind: kindOf(de.Type())}
		if info, err := de.Info(); err == nil {
			if e.Kind == "file" {
				e.Size = info.Size()
			}
			mt := info.ModTime().Unix()
			e.Mtime = &mt
		}
		if o.keep(e) {
			entries = append(entries, e)
		}
	}
	return o.page(entries, offset), nil
}

// Paginate filters, sorts and pages entries listed elsewhere (a WebDAV collection) with the
// rules and cursors of List. entries is not modified.
func Paginate(entries []Entry, o Options) (Page, error) {
	if err := o.normalize(); err != nil {
		return Page{}, err
	}
	offset, err := o.offset()
	if err != nil {
		return Page{}, err
	}
	kept := make([]Entry, 0, len(entries))
	for _, e := range entries {
		if o.keep(e) {
			kept = append(kept, e)
		}
	}
	return o.page(kept, offset), nil
}

// offset decodes the cursor; it must belong to the same sort order.
func (o *Options) offset() (int, error) {
	if o.Cursor == "" {
		return 0, nil
	}
	var c cursor
	raw, err := base64.RawURLEncoding.DecodeString(o.Cursor)
	if err != nil || json.Unmarshal(raw, &c) != nil || c.Offset < 0 || c.Sort != o.sortKey() {
		return 0, &Error{CodeInvalidCursor, "cursor is invalid or belongs to another sort order"}
	}
	return c.Offset, nil
}

// page sorts the kept entries and cuts the page starting at offset.
func (o *Options) page(entries []Entry, offset int) Page {
	o.sort(entries)
	p := Page{Total: int64(len(entries))}
	if !o.Paged {
		p.Entries = entries
		return p
	}
	offset = min(offset, len(entries))
	end := min(offset+o.Limit, len(entries))
	p.Entries = entries[offset:end]
	if end < len(entries) {
		b, _ := json.Marshal(cursor{Sort: o.sortKey(), Offset: end})
		p.NextCursor = base64.RawURLEncoding.EncodeToString(b)
	}
	return p
}

// NormalizeTypeSort maps the original Bastion's type_sort values (dir_first, file_first) to ours
// (dirs_first, files_first), which stay accepted as aliases; anything else is returned as is.
func NormalizeTypeSort(v string) string {
	switch v {
	case "dir_first":
		return "dirs_first"
	case "file_first":
		return "files_first"
	}
	return v
}

func (o *Options) normalize() error {
	if o.Limit < 0 {
		return &Error{CodeInvalidOption, "limit must be positive"}
	}
	if o.Limit == 0 {
		o.Limit = DefaultLimit
	}
	o.Limit = min(o.Limit, MaxLimit)
	switch o.Kind {
	case "", "all":
		o.Kind = ""
	case "dir", "file", "symlink":
	default:
		return &Error{CodeInvalidOption, "kind must be dir, file or symlink"}
	}
	switch o.SortBy {
	case "":
		o.SortBy = "name"
	case "name", "mtime", "size":
	default:
		return &Error{CodeInvalidOption, "sort_by must be name, mtime or size"}
	}
	switch o.SortDir {
	case "":
		o.SortDir = "asc"
	case "asc", "desc":
	default:
		return &Error{CodeInvalidOption, "sort_dir must be asc or desc"}
	}
	o.TypeSort = NormalizeTypeSort(o.TypeSort)
	switch o.TypeSort {
	case "", "dirs_first", "files_first", "none":
	default:
		return &Error{CodeInvalidOption, "type_sort must be dir_first, file_first or none"}
	}
	return nil
}

// sortKey names everything that decides the order and membership of entries: a cursor is only
// valid for the same key.
func (o *Options) sortKey() string {
	var lo, hi string
	if o.SizeMin != nil {
		lo = fmt.Sprint(*o.SizeMin)
	}
	if o.SizeMax != nil {
		hi = fmt.Sprint(*o.SizeMax)
	}
	return strings.Join([]string{o.SortBy, o.SortDir, o.TypeSort, o.Kind, o.Q, fmt.Sprint(o.HideDotfiles), lo, hi}, "|")
}

func (o *Options) keep(e Entry) bool {
	if o.HideDotfiles && strings.HasPrefix(e.Name, ".") {
		return false
	}
	if o.Kind != "" && e.Kind != o.Kind {
		return false
	}
	if o.Q != "" && !strings.Contains(strings.ToLower(e.Name), strings.ToLower(o.Q)) {
		return false
	}
	if e.Kind == "file" {
		if o.SizeMin != nil && e.Size < *o.SizeMin {
			return false
		}
		if o.SizeMax != nil && e.Size > *o.SizeMax {
			return false
		}
	}
	return true
}

func (o *Options) sort(es []Entry) {
	typeRank := func(e Entry) int {
		isDir := e.Kind == "dir"
		switch {
		case o.TypeSort == "dirs_first" && !isDir, o.TypeSort == "files_first" && isDir:
			return 1
		}
		return 0
	}
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if ra, rb := typeRank(a), typeRank(b); ra != rb {
			return ra < rb
		}
		c := 0
		switch o.SortBy {
		case "mtime":
			c = cmp64(deref(a.Mtime), deref(b.Mtime))
		case "size":
			c = cmp64(a.Size, b.Size)
		}
		if c == 0 {
			c = strings.Compare(a.Name, b.Name)
		}
		if o.SortDir == "desc" {
			c = -c
		}
		return c < 0
	})
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	}
	return "other"
}

func fsError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &Error{CodePathNotFound, "path does not exist"}
	case errors.Is(err, fs.ErrPermission):
		return &Error{CodePermission, "permission denied"}
	case errors.Is(err, syscallENOTDIR):
		return &Error{CodeNotDirectory, "a parent of the path is not a directory"}
	}
	return fmt.Errorf("list directory: %w", err)
}
