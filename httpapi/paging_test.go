package httpapi

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

func TestReadPage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		query string
		want  pageRequest
		code  string
	}{
		{"", pageRequest{page: 1}, ""},
		{"?status=x", pageRequest{page: 1}, ""},
		{"?page=3", pageRequest{page: 3, size: 20, paged: true}, ""},
		{"?page_size=5", pageRequest{page: 1, size: 5, paged: true}, ""},
		{"?page=2&page_size=500", pageRequest{page: 2, size: 100, paged: true}, ""},
		{"?page=0", pageRequest{}, "invalid_page"},
		{"?page=x&page_size=5", pageRequest{}, "invalid_page"},
		{"?page=-1", pageRequest{}, "invalid_page"},
		{"?page_size=0", pageRequest{}, "invalid_page_size"},
		{"?page_size=1.5", pageRequest{}, "invalid_page_size"},
		{"?page=1000000&page_size=100", pageRequest{page: 1_000_000, size: 100, paged: true}, ""},
		{"?page=1000001", pageRequest{}, "invalid_page"},
		{"?page=922337203685477581&page_size=20", pageRequest{}, "invalid_page"}, // (page-1)*20 overflows
		{"?page=99999999999999999999", pageRequest{}, "invalid_page"},
	} {
		got, err := readPage(httptest.NewRequest("GET", "/api/x"+tc.query, nil))
		var apiErr *respond.APIError
		switch {
		case tc.code == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %+v %v, want %+v", tc.query, got, err, tc.want)
		case tc.code != "" && (!errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Code != tc.code):
			t.Errorf("%s: %v, want 400 %s", tc.query, err, tc.code)
		}
	}
	if off := (pageRequest{page: 3, size: 20, paged: true}).offset(); off != 40 {
		t.Fatalf("offset of page 3 of 20 = %d", off)
	}
}

// A hostile limit on a cursor-paged list (the audit log, runs) is clamped to the page bound,
// never handed to SQL as asked; one too big for an int is refused.
func TestReadCursorLimitClampsHostileValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		limit string
		want  int
		code  string
	}{
		{"", 50, ""},
		{"7", 7, ""},
		{"1000000000", 200, ""},
		{"0", 1, ""},
		{"-5", 1, ""},
		{"99999999999999999999", 0, "invalid_limit"},
		{"1e3", 0, "invalid_limit"},
	} {
		got, err := readCursorLimit(url.Values{"limit": {tc.limit}}, 50, 200)
		if tc.limit == "" {
			got, err = readCursorLimit(url.Values{}, 50, 200)
		}
		var apiErr *respond.APIError
		switch {
		case tc.code == "" && (err != nil || got != tc.want):
			t.Errorf("limit=%q: %d, %v; want %d", tc.limit, got, err, tc.want)
		case tc.code != "" && (!errors.As(err, &apiErr) || apiErr.Code != tc.code):
			t.Errorf("limit=%q: %d, %v; want %s", tc.limit, got, err, tc.code)
		}
	}
}
