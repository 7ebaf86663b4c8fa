package fslist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func names(es []Entry) string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return fmt.Sprint(out)
}

// TestPaginateMatchesList: entries listed elsewhere (a WebDAV collection) are filtered, sorted
// and paged exactly as a directory on disk, and a cursor is only good for its own sort.
func TestPaginateMatchesList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sizes := map[string]int{"b.txt": 30, "a.txt": 10, ".hidden": 5, "c.log": 20}
	var entries []Entry
	for n, sz := range sizes {
		if err := os.WriteFile(filepath.Join(dir, n), make([]byte, sz), 0o600); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, Entry{Name: n, Path: "/" + n, Kind: "file", Size: int64(sz)})
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	entries = append(entries, Entry{Name: "sub", Path: "/sub", Kind: "dir"})

	opts := Options{Limit: 2, HideDotfiles: true, TypeSort: "dirs_first", Paged: true}
	var fromList, fromPage []string
	for _, src := range []string{"list", "paginate"} {
		o := opts
		for {
			var p Page
			var err error
			if src == "list" {
				p, err = List(dir, o)
			} else {
				p, err = Paginate(entries, o)
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != 4 {
				t.Fatalf("%s total %d", src, p.Total)
			}
			if src == "list" {
				fromList = append(fromList, names(p.Entries))
			} else {
				fromPage = append(fromPage, names(p.Entries))
			}
			if p.NextCursor == "" {
				break
			}
			o.Cursor = p.NextCursor
		}
	}
	if fmt.Sprint(fromPage) != "[[sub a.txt] [b.txt c.log]]" || fmt.Sprint(fromList) != fmt.Sprint(fromPage) {
		t.Fatalf("pages: list %v, paginate %v", fromList, fromPage)
	}

	first, err := Paginate(entries, Options{Limit: 1, SortBy: "size", SortDir: "desc", Paged: true})
	if err != nil || names(first.Entries) != "[b.txt]" {
		t.Fatalf("by size: %v %v", first, err)
	}
	_, err = Paginate(entries, Options{Limit: 1, Cursor: first.NextCursor, Paged: true})
	var fe *Error
	if !errors.As(err, &fe) || fe.Code != CodeInvalidCursor {
		t.Fatalf("cursor of another sort: %v", err)
	}
	if _, err := Paginate(entries, Options{Kind: "pipe", Paged: true}); !errors.As(err, &fe) || fe.Code != CodeInvalidOption {
		t.Fatalf("bad kind: %v", err)
	}
}

// TestOriginalSpellings: the original Bastion's type_sort values and kind=symlink are accepted,
// and ours stay aliases.
func TestOriginalSpellings(t *testing.T) {
	t.Parallel()
	entries := []Entry{{Name: "a", Kind: "file"}, {Name: "b", Kind: "dir"}, {Name: "c", Kind: "symlink"}}
	for ts, want := range map[string]string{"dir_first": "[b a c]", "dirs_first": "[b a c]", "file_first": "[a c b]", "files_first": "[a c b]", "none": "[a b c]"} {
		p, err := Paginate(append([]Entry(nil), entries...), Options{TypeSort: ts, Paged: true})
		if err != nil || names(p.Entries) != want {
			t.Errorf("type_sort=%s: %v %v, want %s", ts, names(p.Entries), err, want)
		}
	}
	p, err := Paginate(append([]Entry(nil), entries...), Options{Kind: "symlink", Paged: true})
	if err != nil || names(p.Entries) != "[c]" {
		t.Fatalf("kind=symlink: %v %v", p.Entries, err)
	}
	var fe *Error
	if _, err := Paginate(entries, Options{TypeSort: "dir_last", Paged: true}); !errors.As(err, &fe) || fe.Code != CodeInvalidOption {
		t.Fatalf("bad type_sort: %v", err)
	}
}
