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
	now     func() time.Time

	mu   sync.Mutex
	meta map[string]*fileMeta
}

// fileMeta is what serving a file needs besides its bytes. It is re-validated against the file
// system at most once per revalidateEvery, so a busy Hub does one stat per file per second instead
// of several per request, and a rebuilt UI directory is picked up within that second.
type fileMeta struct {
	size      int64
	modTime   time.Time
	etag      string
	siblings  map[string]*fileMeta // "br", "gzip" → precompressed variant
	checkedAt time.Time
}

const revalidateEvery = time.Second

// New serves fsys. Use Dir for a directory on disk.
func New(fsys fs.FS, log zerolog.Logger) *Handler {
	return &Handler{fsys: fsys, modTime: time.Now().UTC().Truncate(time.Second), log: log, now: time.Now,
		meta: map[string]*fileMeta{}}
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
	m, err := h.lookup(name)
	if err != nil || m == nil {
		return false
	}
	servedName, served, encoding := name, m, ""
	accept := r.Header.Get("Accept-Encoding")
	for _, enc := range []string{"br", "gzip"} {
		if sib := m.siblings[enc]; sib != nil && acceptsEncoding(accept, enc) {
			servedName, served, encoding = name+siblingExt[enc], sib, enc
			break
		}
	}

	hdr := w.Header()
	if strings.HasPrefix(name, assetsPrefix) {
		hdr.Set("Cache-Control", cacheImmutable)
	} else {
		hdr.Set("Cache-Control", cacheRevalidate)
	}
	hdr.Set("ETag", served.etag)
	hdr.Set("X-Content-Type-Options", "nosniff")
	if len(m.siblings) > 0 {
		hdr.Add("Vary", "Accept-Encoding")
	}
	mod := served.modTime
	if mod.IsZero() {
		mod = h.modTime
	}
	// The commonest conditional request, a revalidation with the current ETag, is answered from
	// the cache without touching the file. (RFC 9110: If-None-Match decides; If-Modified-Since is
	// then ignored.) Everything else goes through http.ServeContent.
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagListMatches(inm, served.etag) {
		hdr.Set("Last-Modified", mod.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusNotModified)
		return true
	}

	f, err := h.fsys.Open(servedName)
	if err != nil {
		h.forget(name)
		return false
	}
	defer f.Close()
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		h.log.Error().Str("file", servedName).Msg("UI file system does not support seeking")
		return false
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	hdr.Set("Content-Type", ctype)
	if encoding != "" {
		hdr.Set("Content-Encoding", encoding)
	}
	// rs is the *os.File itself in directory mode, so net/http can use sendfile.
	http.ServeContent(w, r, name, mod, rs)
	return true
}

var siblingExt = map[string]string{"br": ".br", "gzip": ".gz"}

// lookup returns the cached metadata of name, revalidating it when it is older than
// revalidateEvery; nil when name is not a regular file.
func (h *Handler) lookup(name string) (*fileMeta, error) {
	now := h.now()
	h.mu.Lock()
	m := h.meta[name]
	h.mu.Unlock()
	if m != nil && now.Sub(m.checkedAt) < revalidateEvery {
		return m, nil
	}
	st, err := fs.Stat(h.fsys, name)
	if err != nil || !st.Mode().IsRegular() {
		h.forget(name)
		return nil, nil
	}
	if m != nil && m.size == st.Size() && m.modTime.Equal(st.ModTime()) {
		fresh := *m
		fresh.checkedAt = now
		h.store(name, &fresh)
		return &fresh, nil
	}
	fresh, err := h.describe(name, st)
	if err != nil {
		return nil, err
	}
	fresh.siblings = map[string]*fileMeta{}
	for enc, ext := range siblingExt {
		if sst, err := fs.Stat(h.fsys, name+ext); err == nil && sst.Mode().IsRegular() {
			if sib, err := h.describe(name+ext, sst); err == nil {
				fresh.siblings[enc] = sib
			}
		}
	}
	fresh.checkedAt = now
	h.store(name, fresh)
	return fresh, nil
}

// describe hashes a file for its strong ETag, streaming it, never loading it whole.
func (h *Handler) describe(name string, st fs.FileInfo) (*fileMeta, error) {
	f, err := h.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		h.log.Warn().Err(err).Str("file", name).Msg("hash UI file")
		return nil, err
	}
	return &fileMeta{size: st.Size(), modTime: st.ModTime(), etag: `"` + hex.EncodeToString(sum.Sum(nil)[:16]) + `"`}, nil
}

func (h *Handler) store(name string, m *fileMeta) {
	h.mu.Lock()
	h.meta[name] = m
	h.mu.Unlock()
}

func (h *Handler) forget(name string) {
	h.mu.Lock()
	delete(h.meta, name)
	h.mu.Unlock()
}

// etagListMatches applies If-None-Match's weak comparison: "*" or any listed tag equal to etag
// once W/ prefixes are ignored.
func etagListMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
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
