package agentsock_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/agent/client"
	"github.com/bastion-backup/bastion/agent/protocol"
	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/httpapi/agentsock"
	"github.com/bastion-backup/bastion/storage"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// seedAgents inserts n agents and returns their keys.
func seedAgents(tb testing.TB, db *storage.DB, n int) []string {
	tb.Helper()
	keys := make([]string, n)
	err := db.Write(context.Background(), func(q storage.Q) error {
		for i := range keys {
			keys[i] = protocol.NewToken()
			hash, _ := protocol.HashToken(keys[i])
			if err := q.InsertAgent(context.Background(), storage.Agent{ID: fmt.Sprintf("agent-%04d", i), KeyHash: hash, CreatedAt: 1, UpdatedAt: 1}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

// benchHub serves an agentsock.Hub on addr ("127.0.0.1:0" for any port) until stop.
type benchHub struct {
	hub  *agentsock.Hub
	srv  *http.Server
	addr string
	stop func()
}

func serveHub(tb testing.TB, db *storage.DB, addr string) *benchHub {
	tb.Helper()
	h := agentsock.New(agentsock.Config{DB: db, Clock: clock.Real{}, Logger: zerolog.Nop()})
	r := chi.NewRouter()
	h.Routes(r)
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ { // the port of a Hub that just stopped may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: r, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = srv.Serve(ln) }()
	go func() { _ = h.Run(ctx) }()
	return &benchHub{hub: h, srv: srv, addr: ln.Addr().String(), stop: func() {
		_ = srv.Close()
		cancel()
	}}
}

// swarmAgent is a simulated agent: a real WebSocket client that reconnects with a Backoff and
// records every connection attempt.
func swarmAgent(ctx context.Context, url, key string, b *client.Backoff, attempts chan<- time.Time, up *atomic.Int64) {
	for ctx.Err() == nil {
		attempts <- time.Now()
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + key}}})
		if err == nil {
			b.Reset() // a real agent resets after a healthy minute; each storm starts fresh
			up.Add(1)
			_, _, err = c.Read(ctx) // idle until the Hub goes away
			up.Add(-1)
			c.CloseNow()
		}
		t := time.NewTimer(b.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// BenchmarkReconnectStorm: 1,000 agents lose the Hub at once; it comes back after 2.5 s. Reported:
// the peak connection attempts in any 100 ms, and the seconds from the Hub's return until every
// agent is connected again, for the same agents without jitter, with the original's
// deterministic [base/2, base] jitter, and with full jitter.
func BenchmarkReconnectStorm(b *testing.B) {
	const agents = 1000
	const downFor = 2500 * time.Millisecond
	for _, impl := range []string{"nojitter", "halfjitter", "fulljitter", "decorrelated"} {
		b.Run("impl="+impl, func(b *testing.B) {
			db := storagetest.Open(b)
			keys := seedAgents(b, db, agents)
			var peak, back float64
			for b.Loop() {
				p, bk := reconnectStorm(b, db, keys, impl, downFor)
				peak += p
				back += bk
			}
			b.ReportMetric(peak/float64(b.N), "peak_attempts/100ms")
			b.ReportMetric(back/float64(b.N), "s_until_all_back")
		})
	}
}

func reconnectStorm(b *testing.B, db *storage.DB, keys []string, impl string, downFor time.Duration) (peak, back float64) {
	h := serveHub(b, db, "127.0.0.1:0")
	url := "ws://" + h.addr + "/agent/ws"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	attempts := make(chan time.Time, 1<<16)
	var up atomic.Int64
	var wg sync.WaitGroup
	for i, key := range keys {
		bo := &client.Backoff{Base: client.BackoffBase, Cap: client.BackoffCap, ID: fmt.Sprintf("agent-%04d", i),
			Jitter: map[string]client.Jitter{"nojitter": client.JitterNone, "halfjitter": client.JitterHalf, "fulljitter": client.JitterFull, "decorrelated": client.JitterDecorrelated}[impl]}
		wg.Add(1)
		go func() {
			defer wg.Done()
			swarmAgent(ctx, url, key, bo, attempts, &up)
		}()
	}
	waitUntilB(b, "all agents connected", 2*time.Minute, func() bool { return h.hub.ConnectedCount() == len(keys) && up.Load() == int64(len(keys)) })
	for len(attempts) > 0 {
		<-attempts
	}

	h.stop()
	time.Sleep(downFor) // the outage being simulated
	h2 := serveHub(b, db, h.addr)
	restarted := time.Now()
	waitUntilB(b, "all agents back", 5*time.Minute, func() bool { return h2.hub.ConnectedCount() == len(keys) })
	back = time.Since(restarted).Seconds()

	buckets := map[int64]int{}
	for len(attempts) > 0 {
		at := <-attempts
		buckets[at.UnixMilli()/100]++
	}
	for _, n := range buckets {
		peak = max(peak, float64(n))
	}
	cancel()
	h2.stop()
	wg.Wait()
	return peak, back
}

func waitUntilB(tb testing.TB, what string, limit time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkDeadPeerDetection black-holes an agent's connection (bytes vanish, no FIN) and
// measures how long the agent takes to give up on it and dial again, and how long the Hub takes
// to drop its side, both as a ratio of the pong timeout (3 heartbeats of 500 ms). Without the
// heartbeat and the Hub's read deadline, neither side would notice before TCP keepalive (minutes
// to hours).
func BenchmarkDeadPeerDetection(b *testing.B) {
	const hb = 500 * time.Millisecond
	pongTimeout := 3 * hb
	b.Run("impl=heartbeat", func(b *testing.B) {
		var agentSide, hubSide float64
		for b.Loop() {
			a, h := deadPeerOnce(b, hb)
			agentSide += a.Seconds() / pongTimeout.Seconds()
			hubSide += h.Seconds() / pongTimeout.Seconds()
		}
		b.ReportMetric(agentSide/float64(b.N), "agent_detect/pong_timeout")
		b.ReportMetric(hubSide/float64(b.N), "hub_detect/pong_timeout")
	})
}

func deadPeerOnce(b *testing.B, hb time.Duration) (agentSide, hubSide time.Duration) {
	th := newTestHub(b, hubOpts{})
	px := newFaultProxy(b, th.srv.Listener.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := client.New(ctx, client.Options{HubURL: px.url(), EnrollToken: newEnrollToken(b, th.db, nil), DataDir: b.TempDir(),
		Heartbeat: hb, Logger: zerolog.Nop(), Backoff: &client.Backoff{Base: time.Millisecond, Cap: time.Millisecond}})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	waitUntilB(b, "agent connected", time.Minute, func() bool {
		ag, err := th.db.Reader().GetAgent(context.Background(), a.ID())
		return err == nil && ag.CapabilitiesJSON != nil && px.linksOpened() == 1
	})
	dials := px.accepted() // the enrollment request came through the proxy too
	start := time.Now()
	px.setUpstream("127.0.0.1:1") // the agent's next dial fails fast
	px.faultAll(faultBlackhole)
	var agentAt, hubAt time.Time
	waitUntilB(b, "both sides noticed", time.Minute, func() bool {
		if agentAt.IsZero() && px.accepted() > dials {
			agentAt = time.Now()
		}
		if hubAt.IsZero() && !th.hub.Connected(a.ID()) {
			hubAt = time.Now()
		}
		return !agentAt.IsZero() && !hubAt.IsZero()
	})
	cancel()
	<-done
	th.stop()
	return agentAt.Sub(start), hubAt.Sub(start)
}

// BenchmarkIdleAgentMemory: Hub heap per connected idle agent with 1,000 agents, the agents
// being in a child process so that only the Hub's side is counted. Baseline: a bare WebSocket
// server that only holds the same connections (what the library itself costs).
func BenchmarkIdleAgentMemory(b *testing.B) {
	const agents = 1000
	for _, impl := range []string{"bare", "hub"} {
		b.Run("impl="+impl, func(b *testing.B) {
			var perAgent float64
			for b.Loop() {
				perAgent += idleMemoryOnce(b, impl, agents)
			}
			b.ReportMetric(perAgent/float64(b.N), "heap_bytes/agent")
		})
	}
}

func idleMemoryOnce(b *testing.B, impl string, agents int) float64 {
	db := storagetest.Open(b)
	keys := seedAgents(b, db, agents)
	var addr string
	var connected func() int
	var stop func()
	switch impl {
	case "hub":
		h := serveHub(b, db, "127.0.0.1:0")
		addr, connected, stop = h.addr, h.hub.ConnectedCount, h.stop
	default:
		var n atomic.Int64
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			n.Add(1)
			defer n.Add(-1)
			_, _, _ = c.Read(r.Context())
		})}
		go func() { _ = srv.Serve(ln) }()
		addr, connected, stop = ln.Addr().String(), func() int { return int(n.Load()) }, func() { _ = srv.Close() }
	}
	defer stop()
	before := heapInUse()
	keyFile := b.TempDir() + "/keys"
	if err := os.WriteFile(keyFile, []byte(strings.Join(keys, "\n")), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=swarm", "SWARM_URL=ws://"+addr+"/agent/ws", "SWARM_KEYS="+keyFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	waitUntilB(b, "swarm connected", 2*time.Minute, func() bool { return connected() == agents })
	after := heapInUse()
	return float64(after-before) / float64(agents)
}

func heapInUse() uint64 {
	var m runtime.MemStats
	for i := 0; i < 2; i++ {
		runtime.GC()
		debug.FreeOSMemory()
	}
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// swarmMain holds one idle WebSocket per key (the memory benchmark's agents) until killed.
func swarmMain() int {
	raw, err := os.ReadFile(os.Getenv("SWARM_KEYS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	url := os.Getenv("SWARM_URL")
	var conns []*websocket.Conn
	for _, key := range strings.Split(string(raw), "\n") {
		c, _, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + key}}})
		if err != nil {
			fmt.Fprintln(os.Stderr, "swarm dial:", err)
			return 1
		}
		conns = append(conns, c)
		go func() { _, _, _ = c.Read(context.Background()) }()
	}
	// Pings keep the Hub's read deadline from closing idle agents.
	for {
		time.Sleep(10 * time.Second)
		ping, _ := protocol.Encode(&protocol.Ping{})
		for _, c := range conns {
			_ = c.Write(context.Background(), websocket.MessageText, ping)
		}
	}
}
