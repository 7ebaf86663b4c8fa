package restore

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/bastion-backup/bastion/engine/backup/format"
)

// ListOptions selects and pages the children of one directory of a snapshot.
type ListOptions struct {
	Prefix       string // directory path; "" is the root
	Cursor       string // from the previous page's NextCursor
	Limit        int    // default 200, at most 1000
	Q            string // case-insensitive substring of the name
	Kind         string // "", file, dir or symlink
	HideDotfiles bool
	MinSize      *int64 // files only
	MaxSize      *int64
	FilesFirst   bool // files before directories; otherwise directories first
}

// Child is one entry of a listing. Directories that have no index record of their own (the
// parents of a selected path, such as "srv" above "srv/app") are listed as kind dir.
type Child struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Kind string `json:"kind"`
	Size int64  `json:"size"`
}

// Page is one page of children.
type Page struct {
	Prefix     string  `json:"prefix"`
	Entries    []Child `json:"entries"`
	NextCursor string  `json:"next_cursor,omitempty"`
	Total      int     `json:"total"` // matching children, all pages
}

// page reads the paging of opts: the normalized prefix, the page size (default 200, at most
// 1000) and the offset the cursor carries. List and Index.List share it.
func (opts ListOptions) page() (prefix string, limit, offset int, err error) {
	prefix = normalizeSelPath(opts.Prefix)
	limit = opts.Limit
	if limit <= 0 {
		limit = 200
	}
	limit = min(limit, 1000)
	if opts.Cursor != "" {
		n, err := strconv.Atoi(opts.Cursor)
		if err != nil || n < 0 {
			return "", 0, 0, &Error{Code: CodeSelection, Err: fmt.Errorf("invalid cursor")}
		}
		offset = n
	}
	return prefix, limit, offset, nil
}

// List reads a local copy of entries.jsonl.zst (see FetchIndex) and returns one page of the
// children of opts.Prefix. It streams the index and keeps only that directory's children in
// memory.
func List(indexPath string, opts ListOptions) (Page, error) {
	prefix, limit, offset, err := opts.page()
	if err != nil {
		return Page{}, err
	}
	q := strings.ToLower(opts.Q)
	children := map[string]*Child{}
	err = scanIndex(indexPath, func(e format.Entry) error {
		rest := e.Path
		if prefix != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(e.Path, prefix+"/"); !ok {
				return nil
			}
		}
		name, deeper, _ := strings.Cut(rest, "/")
		if name == "" {
			return nil
		}
		if deeper != "" {
			if _, ok := children[name]; !ok {
				children[name] = &Child{Name: name, Path: joinPath(prefix, name), Kind: format.KindDir}
			}
			return nil
		}
		children[name] = &Child{Name: name, Path: e.Path, Kind: e.Kind, Size: e.Size}
		return nil
	})
	if err != nil {
		return Page{}, err
	}
	var all []Child
	for _, c := range children {
		switch {
		case opts.Kind != "" && c.Kind != opts.Kind:
		case opts.HideDotfiles && strings.HasPrefix(c.Name, "."):
		case q != "" && !strings.Contains(strings.ToLower(c.Name), q):
		case c.Kind == format.KindFile && opts.MinSize != nil && c.Size < *opts.MinSize:
		case c.Kind == format.KindFile && opts.MaxSize != nil && c.Size > *opts.MaxSize:
		default:
			all = append(all, *c)
		}
	}
	rank := func(c Child) int {
		isDir := c.Kind == format.KindDir
		if isDir != opts.FilesFirst {
			return 0
		}
		return 1
	}
	slices.SortFunc(all, func(a, b Child) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a.Name, b.Name))
	})
	page := Page{Prefix: prefix, Total: len(all), Entries: []Child{}}
	if offset < len(all) {
		end := min(offset+limit, len(all))
		page.Entries = all[offset:end]
		if end < len(all) {
			page.NextCursor = strconv.Itoa(end)
		}
	}
	return page, nil
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}
