// Package webui serves the built web app the way a CDN would: strong ETags (304 on
// revalidation), Range, HEAD and If-Modified-Since, precompressed .br/.gz siblings when the
// browser accepts them, immutable caching for hashed assets, no-cache for index.html, and
// index.html for every unknown path so that deep links into the single-page app work.
//
// Serving is shaped by what a busy Hub profiles as costly: system calls and per-request
// allocations. Everything a response needs besides the bytes (ETag, header values, which
// siblings exist) is computed once per file and revalidated at most once a second. A whole,
// unconditional GET (the commonest request) skips http.ServeContent: on a directory it goes out
// with sendfile from a file kept open, and from a file system without real files (the UI embedded
// in the binary) it is written straight from one copy held in memory, never copied per request.
// Everything else (Range, If-Match, If-Modified-Since, …) still goes through http.ServeContent.
package webui

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// Header values shared by every response. Each slice has len == cap, so a later Header.Add
// appends to a fresh copy and never writes into the shared array.
var (
	hdrImmutable    = []string{cacheImmutable}
	hdrRevalidate   = []string{cacheRevalidate}
	hdrNosniff      = []string{"nosniff"}
	hdrVary         = []string{"Accept-Encoding"}
	hdrAcceptRanges = []string{"bytes"}
)

// Limits of what is kept in memory or open between requests.
const (
	// memoryFile: from a file system without real files (embedded), files up to this size are
	// held in memory; bigger ones are opened and streamed per request.
	memoryFile = 16 << 20
	// Open files kept for sendfile: per served file, and over the whole handler, so a UI with many
	// files cannot use up the process's descriptors.
	maxIdlePerFile = 8
	maxIdleFiles   = 256
)

// revalidateEvery bounds how long a changed file can go unnoticed: a busy Hub does one stat per
// file per second instead of several per request, and a rebuilt UI directory is picked up within
// that second.
const revalidateEvery = time.Second

// Handler serves a UI build.
type Handler struct {
	fsys    fs.FS
	modTime time.Time // for files whose FS reports none (embedded)
	log     zerolog.Logger
	now     func() time.Time

	mu   sync.RWMutex
	meta map[string]*fileMeta

	idleFiles atomic.Int64 // open files waiting in every pool together
}

// Encodings in order of preference on a tie of q-values: brotli is smaller than gzip.
const (
	encIdentity = iota
	encBrotli
	encGzip
	numEncodings
)

var encodings = [numEncodings]struct {
	name, ext string
	header    []string
}{
	encIdentity: {"identity", "", nil},
	encBrotli:   {"br", ".br", []string{"br"}},
	encGzip:     {"gzip", ".gz", []string{"gzip"}},
}

// fileMeta is what serving one URL needs besides the bytes.
type fileMeta struct {
	cacheControl []string
	contentType  []string
	variants     [numEncodings]*variant // [encIdentity] always set; a sibling when present
	compressed   bool                   // some sibling exists, so responses Vary
	checkedAt    atomic.Int64           // unix nanoseconds of the last stat
}

// variant is one file that can answer a URL: the file itself or a precompressed sibling. Each has
// its own strong ETag (the hash of its bytes), so a cache never mixes encodings.
type variant struct {
	name         string // in the file system
	size         int64
	modTime      time.Time
	etag         string
	etagHdr      []string
	lastModified []string
	length       []string
	encoding     []string  // Content-Encoding; nil for identity
	data         []byte    // the whole file, when served from memory
	files        *filePool // open files for sendfile (directory mode, larger files)
}

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
	if strings.ContainsAny(urlPath, "\\\x00") {
		return "", false
	}
	for rest := urlPath; ; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == ".." {
			return "", false
		}
		if !more {
			break
		}
		rest = after
	}
	// The usual URL is already clean: no allocation for it.
	if name := strings.TrimPrefix(urlPath, "/"); name == "" || fs.ValidPath(name) {
		return name, true
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
	m := h.lookup(name)
	if m == nil {
		return false
	}
	v := m.variants[encIdentity]
	if m.compressed {
		v = m.variants[chooseEncoding(r.Header.Get("Accept-Encoding"), &m.variants)]
	}

	hdr := w.Header()
	prevVary := hdr["Vary"]
	hdr["Cache-Control"] = m.cacheControl
	hdr["Etag"] = v.etagHdr
	hdr["X-Content-Type-Options"] = hdrNosniff
	if m.compressed {
		if prev := hdr["Vary"]; len(prev) > 0 {
			hdr["Vary"] = append(prev, hdrVary[0])
		} else {
			hdr["Vary"] = hdrVary
		}
	}
	hdr["Last-Modified"] = v.lastModified
	// The commonest conditional request, a revalidation with the current ETag, is answered from
	// the cache without touching the file. (RFC 9110: If-None-Match decides; If-Modified-Since is
	// then ignored.)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagListMatches(inm, v.etag) {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	hdr["Content-Type"] = m.contentType
	if v.encoding != nil {
		hdr["Content-Encoding"] = v.encoding
	}
	var served bool
	if wholeUnconditional(r) {
		served = h.sendWhole(w, r, v)
	} else {
		served = h.serveContent(w, r, name, v)
	}
	if !served {
		// The file went away under us: forget it, and let the caller's 404 (or index.html) go
		// out without this file's caching headers.
		for _, k := range []string{"Cache-Control", "Etag", "Last-Modified", "Content-Type", "Content-Encoding", "X-Content-Type-Options", "Accept-Ranges", "Content-Length"} {
			delete(hdr, k)
		}
		if hdr["Vary"] = prevVary; prevVary == nil {
			delete(hdr, "Vary")
		}
		h.replace(name, nil)
	}
	return served
}

// wholeUnconditional reports whether r wants the whole file with no precondition left to
// evaluate (If-None-Match was, and it did not match).
func wholeUnconditional(r *http.Request) bool {
	hdr := r.Header
	return len(hdr["Range"]) == 0 && len(hdr["If-Match"]) == 0 && len(hdr["If-Unmodified-Since"]) == 0 &&
		(len(hdr["If-Modified-Since"]) == 0 || len(hdr["If-None-Match"]) > 0)
}

// sendWhole writes a 200 with the whole of v: what http.ServeContent would send, minus its
// seeks, its 512-byte sniffing read and its per-request header formatting.
func (h *Handler) sendWhole(w http.ResponseWriter, r *http.Request, v *variant) bool {
	var f fs.File
	if v.data == nil {
		var err error
		if f, err = h.openVariant(v); err != nil {
			h.logFor(r).Warn().Err(err).Str("file", v.name).Msg("open UI file")
			return false
		}
		defer h.release(v, f)
	}
	hdr := w.Header()
	hdr["Accept-Ranges"] = hdrAcceptRanges
	hdr["Content-Length"] = v.length
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return true
	}
	if v.data != nil {
		_, _ = w.Write(v.data)
		return true
	}
	if v.files == nil { // a big file of a file system without real files
		_, _ = io.Copy(w, io.LimitReader(f, v.size))
		return true
	}
	// Sending the header first lets net/http hand the whole body to sendfile at once instead of
	// reading its first 512 bytes to sniff a Content-Type that is already set.
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	// The ResponseWriter's ReadFrom (net/http's, through any middleware wrapper that keeps it)
	// passes the limited *os.File to the socket's sendfile.
	_, _ = io.Copy(w, &io.LimitedReader{R: f, N: v.size})
	return true
}

// serveContent hands the request to http.ServeContent, for Range and the rarer preconditions.
func (h *Handler) serveContent(w http.ResponseWriter, r *http.Request, name string, v *variant) bool {
	var content io.ReadSeeker
	if v.data != nil {
		content = bytes.NewReader(v.data)
	} else {
		f, err := h.openVariant(v)
		if err != nil {
			h.logFor(r).Warn().Err(err).Str("file", v.name).Msg("open UI file")
			return false
		}
		defer h.release(v, f)
		rs, ok := f.(io.ReadSeeker)
		if !ok {
			h.logFor(r).Error().Str("file", v.name).Msg("UI file system does not support seeking")
			return false
		}
		content = rs
	}
	// ServeContent leaves out Content-Length when Content-Encoding is set (it cannot know whether
	// a wrapper compresses on the fly); ours is the exact length of the precompressed file, and
	// without it the body would go chunked, which also rules out sendfile.
	if v.encoding != nil && len(r.Header["Range"]) == 0 {
		w.Header()["Content-Length"] = v.length
	}
	http.ServeContent(w, r, name, v.modTime, content)
	return true
}

// logFor returns the request's logger (it carries request_id), or the handler's when the request
// came without one.
func (h *Handler) logFor(r *http.Request) *zerolog.Logger {
	if l := zerolog.Ctx(r.Context()); l.GetLevel() != zerolog.Disabled {
		return l
	}
	return &h.log
}

// openVariant returns an open file positioned at its start: one kept from an earlier request
// when there is one.
func (h *Handler) openVariant(v *variant) (fs.File, error) {
	if v.files != nil {
		if f := v.files.get(); f != nil {
			h.idleFiles.Add(-1)
			if _, err := f.Seek(0, io.SeekStart); err == nil {
				return f, nil
			}
			f.Close()
		}
	}
	return h.fsys.Open(v.name)
}

// release keeps f open for the next request, or closes it.
func (h *Handler) release(v *variant, f fs.File) {
	if of, ok := f.(*os.File); ok && v.files != nil && h.idleFiles.Load() < maxIdleFiles && v.files.put(of) {
		h.idleFiles.Add(1)
		return
	}
	f.Close()
}

// lookup returns the metadata of name, revalidating it when it is older than revalidateEvery;
// nil when name is not a regular file.
func (h *Handler) lookup(name string) *fileMeta {
	now := h.now()
	h.mu.RLock()
	m := h.meta[name]
	h.mu.RUnlock()
	if m != nil && now.UnixNano()-m.checkedAt.Load() < int64(revalidateEvery) {
		return m
	}
	st, err := fs.Stat(h.fsys, name)
	if err != nil || !st.Mode().IsRegular() {
		h.replace(name, nil)
		return nil
	}
	if m != nil && m.variants[encIdentity].size == st.Size() && m.variants[encIdentity].modTime.Equal(h.fileModTime(st)) {
		m.checkedAt.Store(now.UnixNano())
		return m
	}
	fresh, err := h.describe(name, st)
	if err != nil {
		h.log.Warn().Err(err).Str("file", name).Msg("read UI file")
		h.replace(name, nil)
		return nil
	}
	fresh.checkedAt.Store(now.UnixNano())
	h.replace(name, fresh)
	return fresh
}

// replace stores m (nil forgets name) and closes the open files of what it replaces.
func (h *Handler) replace(name string, m *fileMeta) {
	h.mu.Lock()
	old := h.meta[name]
	if m == nil {
		delete(h.meta, name)
	} else {
		h.meta[name] = m
	}
	h.mu.Unlock()
	if old == nil || old == m {
		return
	}
	for _, v := range old.variants {
		if v != nil && v.files != nil {
			h.idleFiles.Add(-int64(v.files.close()))
		}
	}
}

func (h *Handler) fileModTime(st fs.FileInfo) time.Time {
	if t := st.ModTime(); !t.IsZero() {
		return t
	}
	return h.modTime
}

// describe reads name and its precompressed siblings.
func (h *Handler) describe(name string, st fs.FileInfo) (*fileMeta, error) {
	m := &fileMeta{cacheControl: hdrRevalidate}
	if strings.HasPrefix(name, assetsPrefix) {
		m.cacheControl = hdrImmutable
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	m.contentType = []string{ctype}
	v, err := h.describeVariant(name, st, encIdentity)
	if err != nil {
		return nil, err
	}
	m.variants[encIdentity] = v
	for enc := encIdentity + 1; enc < numEncodings; enc++ {
		sibling := name + encodings[enc].ext
		sst, err := fs.Stat(h.fsys, sibling)
		if err != nil || !sst.Mode().IsRegular() {
			continue
		}
		if v, err := h.describeVariant(sibling, sst, enc); err == nil {
			m.variants[enc] = v
			m.compressed = true
		} else {
			h.log.Warn().Err(err).Str("file", sibling).Msg("read precompressed UI file")
		}
	}
	return m, nil
}

// describeVariant hashes a file for its strong ETag and keeps what serving it needs: from a
// directory the open file, for sendfile; from a file system without real files (embedded) its
// bytes, unless it is too big to hold, when it is streamed through the hash and opened per request.
func (h *Handler) describeVariant(name string, st fs.FileInfo, enc int) (*variant, error) {
	f, err := h.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	osFile, isOS := f.(*os.File)
	v := &variant{name: name, modTime: h.fileModTime(st), encoding: encodings[enc].header}
	// A directory's files are streamed, never read whole into memory (runtime.md §4): measured,
	// holding even a 30 KB file saved nothing over sendfile from a kept-open descriptor.
	if limit := int64(memoryFile); !isOS && st.Size() <= limit {
		// Read to EOF rather than trusting the reported size: one byte past the limit tells a
		// file that grew too big to hold.
		var buf bytes.Buffer
		buf.Grow(int(st.Size()) + bytes.MinRead)
		if _, err := io.Copy(&buf, io.LimitReader(f, limit+1)); err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		if int64(buf.Len()) <= limit {
			v.data = buf.Bytes()
		} else {
			f.Close()
			if f, err = h.fsys.Open(name); err != nil {
				return nil, err
			}
			osFile, isOS = f.(*os.File)
		}
	}
	sum := sha256.New()
	if v.data != nil {
		sum.Write(v.data)
		v.size = int64(len(v.data))
	} else {
		n, err := io.Copy(sum, f)
		if err != nil {
			return nil, fmt.Errorf("hash %s: %w", name, err)
		}
		v.size = n
		if isOS {
			v.files = &filePool{}
			if h.idleFiles.Load() < maxIdleFiles && v.files.put(osFile) {
				h.idleFiles.Add(1)
				f = nil // kept open in the pool
			}
		}
	}
	v.etag = `"` + hex.EncodeToString(sum.Sum(nil)[:16]) + `"`
	v.etagHdr = []string{v.etag}
	v.lastModified = []string{v.modTime.UTC().Format(http.TimeFormat)}
	v.length = []string{strconv.FormatInt(v.size, 10)}
	return v, nil
}

// filePool keeps open files of one variant between requests, saving the open, close and
// poller-registration system calls of each.
type filePool struct {
	mu     sync.Mutex
	idle   []*os.File
	closed bool
}

func (p *filePool) get() *os.File {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == 0 {
		return nil
	}
	f := p.idle[len(p.idle)-1]
	p.idle = p.idle[:len(p.idle)-1]
	return f
}

// put keeps f and reports true, or reports false (the caller closes f) when the pool is full or
// closed.
func (p *filePool) put(f *os.File) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= maxIdlePerFile {
		return false
	}
	p.idle = append(p.idle, f)
	return true
}

// close closes the idle files, refuses any returned later, and says how many it closed.
func (p *filePool) close() int {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, f := range idle {
		f.Close()
	}
	return len(idle)
}

// etagListMatches applies If-None-Match's weak comparison: "*" or any listed tag equal to etag
// once W/ prefixes are ignored.
func etagListMatches(header, etag string) bool {
	for rest := header; ; {
		t, after, more := strings.Cut(rest, ",")
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
		if !more {
			return false
		}
		rest = after
	}
}

// chooseEncoding picks among the present variants by an Accept-Encoding header (RFC 9110
// §12.5.3): the highest q-value wins, brotli before gzip on a tie; "*" stands for any coding not
// listed; q=0 refuses a coding. Identity is chosen when nothing else is acceptable, when the
// header is absent, or when the client explicitly ranks identity above the best encoding.
func chooseEncoding(header string, variants *[numEncodings]*variant) int {
	if header == "" {
		return encIdentity
	}
	var q [numEncodings]int // thousandths; -1: not listed
	for i := range q {
		q[i] = -1
	}
	star := -1
	for rest := header; rest != ""; {
		var elem string
		elem, rest, _ = strings.Cut(rest, ",")
		coding, params, _ := strings.Cut(elem, ";")
		coding = strings.TrimSpace(coding)
		qv := parseQ(params)
		switch {
		case strings.EqualFold(coding, "br"):
			q[encBrotli] = qv
		case strings.EqualFold(coding, "gzip") || strings.EqualFold(coding, "x-gzip"):
			q[encGzip] = qv
		case strings.EqualFold(coding, "identity"):
			q[encIdentity] = qv
		case coding == "*":
			star = qv
		}
	}
	best, bestQ := encIdentity, 0
	for enc := encIdentity + 1; enc < numEncodings; enc++ {
		qe := q[enc]
		if qe < 0 {
			qe = star
		}
		if variants[enc] != nil && qe > bestQ {
			best, bestQ = enc, qe
		}
	}
	if best != encIdentity && q[encIdentity] > bestQ {
		return encIdentity
	}
	return best
}

// parseQ returns the q-value in a coding's parameters, in thousandths: 1000 when absent, 0 when
// malformed (a client that cannot say what it wants gets the safe identity).
func parseQ(params string) int {
	for rest := params; rest != ""; {
		var p string
		p, rest, _ = strings.Cut(rest, ";")
		k, val, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		return qvalue(strings.TrimSpace(val))
	}
	return 1000
}

// qvalue parses RFC 9110's qvalue: "0" or "1" with up to three decimals.
func qvalue(s string) int {
	if s == "" || (s[0] != '0' && s[0] != '1') {
		return 0
	}
	whole := int(s[0]-'0') * 1000
	if len(s) == 1 {
		return whole
	}
	if s[1] != '.' || len(s) > 5 {
		return 0
	}
	frac, scale := 0, 100
	for i := 2; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		frac += int(c-'0') * scale
		scale /= 10
	}
	if whole+frac > 1000 {
		return 0
	}
	return whole + frac
}
