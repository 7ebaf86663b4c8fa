package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/testtool"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startHub runs the Hub in-process on a free port and returns its base URL and a stop function
// that cancels it like SIGTERM and returns run's error.
func startHub(t *testing.T, extra ...string) (string, func() error, *syncBuf) {
	t.Helper()
	port := testtool.FreePort(t)
	logs := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"--data-dir", t.TempDir(), "--port", fmt.Sprint(port)}, extra...)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(string) string { return "" }, &bytes.Buffer{}, logs) }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHealthy(t, base, done)
	return base, func() error { cancel(); return <-done }, logs
}

func waitHealthy(t *testing.T, base string, done <-chan error) {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("hub exited during start: %v", err)
		default:
		}
		resp, err := http.Get(base + "/api/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling an external process until a deadline
	}
	t.Fatal("hub never became healthy")
}

func TestHubServesAndStopsCleanly(t *testing.T) {
	t.Parallel()
	base, stop, logs := startHub(t)
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("ETag") == "" {
		t.Fatalf("UI index: %d %v", resp.StatusCode, resp.Header)
	}
	if err := stop(); err != nil {
		t.Fatalf("run after shutdown = %v", err)
	}
	if !strings.Contains(logs.String(), `"message":"Hub stopped"`) {
		t.Fatalf("no clean-stop log line in:\n%s", logs.String())
	}
}

func TestHubRefusesBusyPort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	err = run(context.Background(), []string{"--data-dir", t.TempDir(), "--port", fmt.Sprint(port)},
		func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("run on a busy port = %v", err)
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestHelpPrintsUsageAndIsNotAFailure(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"hub", "-h"}} {
		var out bytes.Buffer
		err := run(context.Background(), args, func(string) string { return "" }, &out, &bytes.Buffer{})
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%v: err = %v, want flag.ErrHelp (main exits 0 for it)", args, err)
		}
		if !strings.Contains(out.String(), "--run-retention-days") || !strings.Contains(out.String(), "BASTION_PORT") {
			t.Fatalf("%v printed %q, want the flags with their variables", args, out.String())
		}
	}
}

// TestHubWiresHostAllowlistAndHeaders: the Hub's flags reach the HTTP layer — --allowed-host and
// --public-base-url name the Hub, other names are refused, and every answer is hardened.
func TestHubWiresHostAllowlistAndHeaders(t *testing.T) {
	t.Parallel()
	base, stop, _ := startHub(t, "--allowed-host", "nas.lan", "--public-base-url", "https://backup.example.com")
	// A clean stop is TestHubServesAndStopsCleanly's subject, not this test's.
	defer func() { _ = stop() }()
	for host, want := range map[string]int{"nas.lan": 200, "backup.example.com": 200, "localhost": 200, "evil.example": 421} {
		req, _ := http.NewRequest("GET", base+"/api/session", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("Host %s: no anti-framing headers: %v", host, resp.Header)
		}
	}
}

// /metrics is wired: refused without --metrics-public (no token auth is connected yet), served
// in the Prometheus text format with it.
func TestHubServesMetricsOnlyWhenPublic(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want int
	}{{nil, http.StatusUnauthorized}, {[]string{"--metrics-public"}, http.StatusOK}} {
		base, stop, _ := startHub(t, tc.args...)
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = stop()
		if resp.StatusCode != tc.want {
			t.Fatalf("%v: GET /metrics = %d %s, want %d", tc.args, resp.StatusCode, body, tc.want)
		}
		if tc.want == http.StatusOK && (!strings.Contains(string(body), "bastion_run_queue_depth 0") ||
			!strings.Contains(string(body), `bastion_build_info{version=`) || !strings.Contains(string(body), "go_goroutines")) {
			t.Fatalf("%v: scrape lacks the Hub's metrics:\n%s", tc.args, body)
		}
	}
}
