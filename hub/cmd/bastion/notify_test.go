package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/testtool"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

// TestRunEndSendsEmail is the notifications "done means" through the real composition: an SMTP
// destination added through the API, a job run, and the email in a real SMTP server (mailpit),
// with notify_sent in the run's log.
func TestRunEndSendsEmail(t *testing.T) {
	t.Parallel()
	smtpAddr, mailAPI := testtool.StartMailpit(t)
	host, portStr, _ := net.SplitHostPort(smtpAddr)
	port, _ := strconv.Atoi(portStr)
	src, dst := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("notify me"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, stop, _ := startHub(t)
	defer stop()
	c := (&apitest.Hub{URL: base}).Login(t)

	st, body := c.Put(t, "/api/secrets/smtp/home", map[string]any{"host": host, "port": port, "username": "", "password": "",
		"from": "bastion@example.com", "to": []string{"admin@example.com"}, "tls": "none"})
	if st != http.StatusNoContent && st != http.StatusOK {
		t.Fatalf("store SMTP destination: %d %v", st, body)
	}
	jobID := createJob(t, c, "mailed-job", map[string]any{"v": 1, "type": "filesystem",
		"source": map[string]any{"paths": []string{src}}, "target": map[string]any{"type": "local_dir", "base_dir": dst}})
	runID := runNow(t, c, jobID)

	deadline := time.Now().Add(2 * time.Minute)
	for {
		msgs := testtool.MailpitMessages(t, mailAPI)
		if len(msgs) > 0 {
			m := msgs[0]
			if !strings.Contains(m.Subject, "mailed-job") || !strings.Contains(m.Text, runID) || len(m.To) != 1 || m.To[0].Address != "admin@example.com" {
				t.Fatalf("unexpected email: subject %q, to %v, body %q", m.Subject, m.To, m.Text)
			}
			break
		}
		if time.Now().After(deadline) {
			_, d := c.Get(t, "/api/runs/"+runID)
			t.Fatalf("no email arrived; run is %v", d["status"])
		}
		time.Sleep(20 * time.Millisecond) // polling an external server until a deadline
	}
	for {
		resp := c.Do(t, "GET", "/api/runs/"+runID+"/events", nil)
		if strings.Contains(string(resp.Body), `"notify_sent"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notify_sent event: %s", resp.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(testtool.MailpitMessages(t, mailAPI)); n != 1 {
		t.Fatalf("%d emails, want exactly 1", n)
	}
}
