package httpapi

import (
	"fmt"
	"net/http"
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
