package agentsock_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// faultProxy is a TCP proxy between an agent and the Hub that understands just enough of
// WebSocket framing to inject faults at a chosen message: drop the connection (close both
// sides), stall it (hold every byte for a while, then deliver late), or black-hole it (bytes
// vanish, no FIN reaches either side; a peer closing is not passed on).
type faultProxy struct {
	t  testing.TB
	ln net.Listener

	mu       sync.Mutex
	upstream string
	links    map[*proxyLink]struct{}
	opened   int
	accepts  int
	armed    *armedFault
	dupType  string // hub→agent messages of this type are delivered twice (once)
	fired    chan struct{}
	closed   bool
}

type faultKind string

const (
	faultDrop      faultKind = "drop"
	faultStall     faultKind = "stall"
	faultBlackhole faultKind = "blackhole"
)

type direction int

const (
	toHub direction = iota
	toAgent
)

// armedFault fires once, on the first frame in dir whose JSON type (and kind, if set) match.
type armedFault struct {
	dir   direction
	typ   string
	kind  string
	fault faultKind
}

type proxyLink struct {
	p            *faultProxy
	agent, hub   net.Conn
	mu           sync.Mutex
	state        faultKind // "" passes
	stallUntil   time.Time
	stallChanged chan struct{}
}

const stallFor = 1500 * time.Millisecond

func newFaultProxy(t testing.TB, upstream string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, ln: ln, upstream: upstream, links: map[*proxyLink]struct{}{}, fired: make(chan struct{})}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *faultProxy) setUpstream(addr string) {
	p.mu.Lock()
	p.upstream = addr
	p.mu.Unlock()
}

func (p *faultProxy) arm(f armedFault) {
	p.mu.Lock()
	p.armed = &f
	p.mu.Unlock()
}

func (p *faultProxy) duplicate(typ string) {
	p.mu.Lock()
	p.dupType = typ
	p.mu.Unlock()
}

func (p *faultProxy) linksOpened() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened
}

// accepted counts TCP connections the proxy accepted (dial attempts).
func (p *faultProxy) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepts
}

// faultAll applies a fault to every open link at once.
func (p *faultProxy) faultAll(k faultKind) {
	p.mu.Lock()
	links := make([]*proxyLink, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.apply(k)
	}
}

func (p *faultProxy) close() {
	p.mu.Lock()
	p.closed = true
	links := p.links
	p.links = map[*proxyLink]struct{}{}
	p.mu.Unlock()
	p.ln.Close()
	for l := range links {
		l.agent.Close()
		l.hub.Close()
	}
}

func (p *faultProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepts++
		up := p.upstream
		p.mu.Unlock()
		h, err := net.Dial("tcp", up)
		if err != nil {
			c.Close()
			continue
		}
		l := &proxyLink{p: p, agent: c, hub: h, stallChanged: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			h.Close()
			return
		}
		p.links[l] = struct{}{}
		p.mu.Unlock()
		go l.pump(toHub, c, h)
		go l.pump(toAgent, h, c)
	}
}

func (l *proxyLink) apply(k faultKind) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state = k
	switch k {
	case faultDrop:
		l.agent.Close()
		l.hub.Close()
	case faultStall:
		l.stallUntil = time.Now().Add(stallFor)
	}
}

// gate decides what happens to a frame about to be forwarded: false discards it.
func (l *proxyLink) gate() (forward bool, alive bool) {
	l.mu.Lock()
	st, until := l.state, l.stallUntil
	l.mu.Unlock()
	switch st {
	case faultDrop:
		return false, false
	case faultBlackhole:
		return false, true
	case faultStall:
		if d := time.Until(until); d > 0 {
			time.Sleep(d) // the proxy's own behaviour under test control, not synchronisation
		}
		l.mu.Lock()
		if l.state == faultStall {
			l.state = ""
		}
		l.mu.Unlock()
	}
	return true, true
}

func (l *proxyLink) pump(dir direction, src, dst net.Conn) {
	r := bufio.NewReaderSize(src, 64<<10)
	defer func() {
		l.mu.Lock()
		st := l.state
		l.mu.Unlock()
		if st == faultBlackhole {
			return // no FIN for the other side: it must notice by itself
		}
		dst.Close()
		src.Close()
	}()
	// The HTTP upgrade request or response passes untouched.
	head, err := readHTTPHead(r)
	if err != nil {
		return
	}
	lower := bytes.ToLower(head)
	socket := bytes.Contains(lower, []byte("upgrade: websocket")) && (dir == toHub || bytes.HasPrefix(head, []byte("HTTP/1.1 101")))
	if socket && dir == toAgent {
		l.p.mu.Lock()
		l.p.opened++ // the Hub accepted an agent socket (it may still be faulted on its way)
		l.p.mu.Unlock()
	}
	if forward, alive := l.gate(); !alive {
		return
	} else if forward {
		if _, err := dst.Write(head); err != nil {
			return
		}
	}
	if !socket {
		_, _ = io.Copy(dst, r) // plain HTTP (enrollment, refusals): no frames to look at
		return
	}
	for {
		raw, payload, err := readFrame(r)
		if err != nil {
			return
		}
		typ, kind := frameType(payload)
		l.p.mu.Lock()
		var fire *armedFault
		if a := l.p.armed; a != nil && a.dir == dir && a.typ == typ && (a.kind == "" || a.kind == kind) {
			fire, l.p.armed = a, nil
		}
		dup := dir == toAgent && l.p.dupType != "" && l.p.dupType == typ
		if dup {
			l.p.dupType = ""
		}
		l.p.mu.Unlock()
		if fire != nil {
			l.apply(fire.fault)
			close(l.p.fired)
		}
		forward, alive := l.gate()
		if !alive {
			return
		}
		if !forward {
			continue
		}
		if _, err := dst.Write(raw); err != nil {
			return
		}
		if dup {
			if _, err := dst.Write(raw); err != nil {
				return
			}
		}
	}
}

func readHTTPHead(r *bufio.Reader) ([]byte, error) {
	var head bytes.Buffer
	for {
		line, err := r.ReadBytes('\n')
		head.Write(line)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return head.Bytes(), nil
		}
	}
}

// readFrame reads one WebSocket frame and returns its raw bytes and unmasked payload.
func readFrame(r *bufio.Reader) (raw, payload []byte, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil, err
	}
	raw = append(raw, hdr[:]...)
	masked := hdr[1]&0x80 != 0
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, nil, err
		}
		raw = append(raw, b[:]...)
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, nil, err
		}
		raw = append(raw, b[:]...)
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 64<<20 {
		return nil, nil, errors.New("frame too large for the test proxy")
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return nil, nil, err
		}
		raw = append(raw, key[:]...)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, nil, err
	}
	raw = append(raw, body...)
	payload = body
	if masked {
		payload = make([]byte, n)
		for i := range body {
			payload[i] = body[i] ^ key[i%4]
		}
	}
	if hdr[0]&0x0f != 0x1 { // only text frames carry protocol messages
		payload = nil
	}
	return raw, payload, nil
}

func frameType(payload []byte) (typ, kind string) {
	if payload == nil {
		return "", ""
	}
	var m struct {
		Type string `json:"type"`
		Kind string `json:"kind"`
	}
	_ = json.Unmarshal(payload, &m)
	return m.Type, m.Kind
}
