package httpapi

import (
	"io/fs"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/bastion-backup/bastion/httpapi/webui"
)

// docsRoutes serves the operator docs, rendered at build time (httpapi/docsite), at /docs/ (the
// index) and /docs/<name> (one document), through the UI's file handler: the same strong ETags,
// 304s and no-cache revalidation as the web app. They need no login (public documentation, and
// the login page links to them) but pass the HTTPS gate and the host allowlist like the UI.
func (s *Server) docsRoutes(r chi.Router, site fs.FS) {
	files := webui.New(site, s.log)
	toIndex := func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, "/docs/", http.StatusMovedPermanently)
	}
	serve := func(w http.ResponseWriter, req *http.Request) {
		file, ok := docsFile(site, strings.TrimPrefix(req.URL.Path, "/docs/"))
		if !ok {
			http.Error(w, "no such document", http.StatusNotFound)
			return
		}
		r2 := req.Clone(req.Context())
		r2.URL.Path, r2.URL.RawPath = "/"+file, ""
		files.ServeHTTP(w, r2)
	}
	r.Get("/docs", toIndex)
	r.Head("/docs", toIndex)
	r.Get("/docs/*", serve)
	r.Head("/docs/*", serve)
}

// docsFile maps what follows /docs/ to a file of the site: "" is the index, docs.css the
// stylesheet, a document name its page. Only a plain name of letters, digits, '-', '_' and '.'
// (never "..", never a '/') can name anything, so no request reaches outside the site.
func docsFile(site fs.FS, name string) (string, bool) {
	switch {
	case name == "":
		return "index.html", true
	case name == "docs.css":
		return name, true
	case strings.Contains(name, ".."):
		return "", false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", false
		}
	}
	file := strings.TrimSuffix(name, ".html") + ".html"
	if st, err := fs.Stat(site, file); err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	return file, true
}
