// Package webui serves the built web app the way a CDN would: streaming files with strong ETags
// (304 on revalidation), Range, HEAD and If-Modified-Since through http.ServeContent,
// precompressed .br/.gz siblings when the browser accepts them, immutable caching for hashed
// assets, no-cache for index.html, and index.html for every unknown path so that deep links into
// the single-page app work.
package webui

import (
	"crypto/sha256"
	"encoding/hex"

	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

const (
	cacheImmutable = "public, max-age=31536000, immutable"
	// no-cache: the browser may keep a copy but must revalidate it, which costs one 304.
	cacheRevalidate = "no-cache"
	indexName       = "index.html"
	assetsPrefix    = "assets/"
)

// Handler serves a UI build.
type Handler struct {
	fsys    fs.FS
	modTime time.Time // for files whose FS reports none (embedded)
	log     zerolog.Logger

	mu    sync.Mutex
	etags map[etagKey]string
}

type etagKey struct {
	name    string
	size    int64
	modTime time.Time
}

// New serves fsys. Use Dir for a directory on disk.
func New(fsys fs.FS, log zerolog.Logger) *Handler {
	return &Handler{fsys: fsys, modTime: time.Now().UTC().Truncate(time.Second), log: log, etags: map[etagKey]string{}}
}

// Dir opens a build directory so that no path, symlink included, can resolve outside it.
func Dir(dir string) (fs.FS, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open UI directory %s: %w", dir, err)
	}
	if _, err := fs.Stat(root.FS(), indexName); err != nil {
		root.Close()
		return nil, fmt.Errorf("UI directory %s has no %s: %w", dir, indexName, err)
	}
	return root.FS(), nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := cleanName(r.URL.Path)
	if !ok {
		http.Error(w, "invalid path", http.StatusBadRequest)
		return
	}
	if name == "" {
		name = indexName
	}
	if h.serveFile(w, r, name) {
		return
	}
	// A missing hashed asset is a real 404: answering index.html would hand the browser HTML
	// where it expects a script (an old tab asking for a chunk of a previous build).
	if strings.HasPrefix(name, assetsPrefix) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if !h.serveFile(w, r, indexName) {
		http.Error(w, "web UI is not available", http.StatusNotFound)
	}
}

// cleanName maps a URL path to an fs.FS name. Any ".." segment is refused outright rather than
// cleaned away: no legitimate UI URL has one.
func cleanName(urlPath string) (string, bool) {
	for _, seg := range strings.Split(urlPath, "/") {
		if seg == ".." {
			return "", false
		}
	}
	if strings.ContainsAny(urlPath, "\\\x00") {
		return "", false
	}
	name := strings.TrimPrefix(path.Clean("/"+urlPath), "/")
	if name != "" && !fs.ValidPath(name) {
		return "", false
	}
	return name, true
}

// serveFile answers with name (or a precompressed sibling) and reports false when name is not a
// regular file.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, name string) bool {
	st, err := fs.Stat(h.fsys, name)
	if err != nil || !st.Mode().IsRegular() {
		return false
	}
	servedName, encoding := name, ""
	if sib, enc, ok := h.precompressed(r, name); ok {
		servedName, encoding = sib, enc
	}
	f, err := h.fsys.Open(servedName)
	if err != nil {
		h.log.Warn().Err(err).Str("file", servedName).Msg("open UI file")
		return false
	}
	defer f.Close()
	fst, err := f.Stat()
	if err != nil {
		return false
	}
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		h.log.Error().Str("file", servedName).Msg("UI file system does not support seeking")
		return false
	}
	etag, err := h.etag(servedName, fst, rs)
	if err != nil {
		h.log.Warn().Err(err).Str("file", servedName).Msg("hash UI file")
		return false
	}

	hdr := w.Header()
	if strings.HasPrefix(name, assetsPrefix) {
		hdr.Set("Cache-Control", cacheImmutable)
	} else {
		hdr.Set("Cache-Control", cacheRevalidate)
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	hdr.Set("Content-Type", ctype)
	hdr.Set("ETag", etag)
	hdr.Set("X-Content-Type-Options", "nosniff")
	if h.hasSiblings(name) {
		hdr.Add("Vary", "Accept-Encoding")
	}
	if encoding != "" {
		hdr.Set("Content-Encoding", encoding)
	}
	mod := fst.ModTime()
	if mod.IsZero() {
		mod = h.modTime
	}
	http.ServeContent(w, r, name, mod, rs)
	return true
}

// precompressed picks a .br or .gz sibling the client accepts.
func (h *Handler) precompressed(r *http.Request, name string) (string, string, bool) {
	accept := r.Header.Get("Accept-Encoding")
	for _, c := range []struct{ enc, ext string }{{"br", ".br"}, {"gzip", ".gz"}} {
		if !acceptsEncoding(accept, c.enc) {
			continue
		}
		if st, err := fs.Stat(h.fsys, name+c.ext); err == nil && st.Mode().IsRegular() {
			return name + c.ext, c.enc, true
		}
	}
	return "", "", false
}

func (h *Handler) hasSiblings(name string) bool {
	for _, ext := range []string{".br", ".gz"} {
		if _, err := fs.Stat(h.fsys, name+ext); err == nil {
			return true
		}
	}
	return false
}

// acceptsEncoding reports whether an Accept-Encoding header allows enc (q=0 refuses it).
func acceptsEncoding(header, enc string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), enc) {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return !(q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000")
	}
	return false
}

// etag is a strong validator: a hash of the bytes served, computed once per file version
// (name, size, modification time) by streaming the file, never by loading it whole.
func (h *Handler) etag(name string, st fs.FileInfo, rs io.ReadSeeker) (string, error) {
	key := etagKey{name, st.Size(), st.ModTime()}
	h.mu.Lock()
	tag, ok := h.etags[key]
	h.mu.Unlock()
	if ok {
		return tag, nil
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, rs); err != nil {
		return "", err
	}
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	tag = `"` + hex.EncodeToString(sum.Sum(nil)[:16]) + `"`
	h.mu.Lock()
	h.etags[key] = tag
	h.mu.Unlock()
	return tag, nil
}
