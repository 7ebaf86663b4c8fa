package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/bastion-backup/bastion/httpapi/respond"
)

// Page sizes of list endpoints (hub.md §5).
const (
	defaultPageSize = 20
	maxPageSize     = 100
	// maxPage bounds page so that the offset (page-1)*page_size stays far from overflowing: an
	// overflowed offset went negative, which SQLite reads as 0, and a page past the end answered
	// page 1. A million pages of 100 is more than any list of this Hub holds.
	maxPage = 1_000_000
)

// pageRequest is what a list request asks for with page and page_size.
type pageRequest struct {
	page, size int  // page ≥ 1 (default 1); size ≥ 1 (default 20, at most 100)
	paged      bool // false: neither was given, which means everything (or the endpoint's default)
}

func (p pageRequest) offset() int { return (p.page - 1) * p.size }

// readPage reads page and page_size, the one parser of every list endpoint: a value that is not a
// whole number ≥ 1 is 400 invalid_page or invalid_page_size; a page above maxPage is 400
// invalid_page (reason out_of_range); a page_size above 100 is 100.
func readPage(r *http.Request) (pageRequest, error) {
	q := r.URL.Query()
	ps, ss := q.Get("page"), q.Get("page_size")
	if ps == "" && ss == "" {
		return pageRequest{page: 1}, nil
	}
	p := pageRequest{page: 1, size: defaultPageSize, paged: true}
	var err error
	if ps != "" {
		if p.page, err = strconv.Atoi(ps); err != nil || p.page < 1 {
			return pageRequest{}, respond.BadRequest("invalid_page", "page must be a whole number ≥ 1").
				Reason("invalid_format").Field("page")
		}
		if p.page > maxPage {
			return pageRequest{}, respond.BadRequest("invalid_page", fmt.Sprintf("page must be at most %d", maxPage)).
				Reason("out_of_range").Field("page").Param("max", maxPage)
		}
	}
	if ss != "" {
		if p.size, err = strconv.Atoi(ss); err != nil || p.size < 1 {
			return pageRequest{}, respond.BadRequest("invalid_page_size", "page_size must be a whole number ≥ 1").
				Reason("invalid_format").Field("page_size")
		}
		p.size = min(p.size, maxPageSize)
	}
	return p, nil
}

// readTimeRange reads the from and to filters of a cursor-paged list (unix seconds ≥ 0); an
// absent one stays nil.
func readTimeRange(q url.Values, from, to **int64) error {
	for _, p := range []struct {
		name string
		dst  **int64
	}{{"from", from}, {"to", to}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return respond.BadRequest("invalid_"+p.name, p.name+" must be unix seconds ≥ 0").Field(p.name)
		}
		*p.dst = &n
	}
	return nil
}

// readCursorLimit reads limit of a cursor-paged list: def when absent, clamped to 1..maxLimit,
// 400 invalid_limit when not a number.
func readCursorLimit(q url.Values, def, maxLimit int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, respond.BadRequest("invalid_limit", fmt.Sprintf("limit must be a number from 1 to %d", maxLimit)).Field("limit").Param("limit", v)
	}
	return min(max(n, 1), maxLimit), nil
}

// readDays reads days, the length of a summary's window: def when absent, 400 invalid_days
// (reason out_of_range) unless a whole number from 1 to maxDays.
func readDays(q url.Values, def, maxDays int) (int, error) {
	v := q.Get("days")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxDays {
		return 0, respond.BadRequest("invalid_days", fmt.Sprintf("days must be a whole number from 1 to %d", maxDays)).
			Reason("out_of_range").Field("days").Param("max", maxDays)
	}
	return n, nil
}
