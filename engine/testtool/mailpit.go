package testtool

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Cert is a self-signed certificate for tests, written to files that servers can load.
type Cert struct {
	CertPEM, KeyPEM   []byte
	CertFile, KeyFile string
}

// SelfSignedCert creates a self-signed ECDSA certificate valid for hosts (DNS names or IP
// addresses; default 127.0.0.1 and localhost), stored in t.TempDir().
func SelfSignedCert(t testing.TB, hosts ...string) Cert {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: hosts[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	c := Cert{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	dir := t.TempDir()
	c.CertFile, c.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(c.CertFile, c.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.KeyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// MailpitOption configures StartMailpit.
type MailpitOption func(*mailpitConfig)

type mailpitConfig struct {
	cert             *Cert
	requireSTARTTLS  bool
	requireTLS       bool
	user, password   string
	allowInsecureAut bool
}

// MailpitTLS offers STARTTLS with cert (see also MailpitRequireSTARTTLS and MailpitImplicitTLS).
func MailpitTLS(cert Cert) MailpitOption { return func(c *mailpitConfig) { c.cert = &cert } }

// MailpitRequireSTARTTLS refuses mail from clients that do not upgrade with STARTTLS.
func MailpitRequireSTARTTLS() MailpitOption {
	return func(c *mailpitConfig) { c.requireSTARTTLS = true }
}

// MailpitImplicitTLS makes the SMTP port speak TLS from the first byte (SMTPS).
func MailpitImplicitTLS() MailpitOption { return func(c *mailpitConfig) { c.requireTLS = true } }

// MailpitAuth requires SMTP AUTH with exactly this user and password. Mailpit then insists on
// TLS unless MailpitInsecureAuth is given too.
func MailpitAuth(user, password string) MailpitOption {
	return func(c *mailpitConfig) { c.user, c.password = user, password }
}

// MailpitInsecureAuth allows PLAIN and LOGIN authentication without TLS.
func MailpitInsecureAuth() MailpitOption { return func(c *mailpitConfig) { c.allowInsecureAut = true } }

// StartMailpit runs a real mailpit on free loopback ports until the test ends. It returns the SMTP
// address (host:port) and the base URL of its HTTP API (read messages with MailpitMessages).
func StartMailpit(t testing.TB, opts ...MailpitOption) (smtpAddr, apiURL string) {
	t.Helper()
	bin := Require(t, "mailpit")
	var cfg mailpitConfig
	for _, o := range opts {
		o(&cfg)
	}
	dir := t.TempDir()
	// A port found free may be taken before mailpit binds it; try a few times.
	var lastErr error
	for range 5 {
		smtpPort, httpPort := FreePort(t), FreePort(t)
		if smtpPort == httpPort {
			continue
		}
		smtpAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(smtpPort))
		apiURL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
		args := []string{
			"--smtp", smtpAddr, "--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
			"--database", filepath.Join(dir, fmt.Sprintf("mailpit-%d.db", smtpPort)),
			"--disable-version-check", "--smtp-disable-rdns", "--quiet",
		}
		if cfg.cert != nil {
			args = append(args, "--smtp-tls-cert", cfg.cert.CertFile, "--smtp-tls-key", cfg.cert.KeyFile)
		}
		if cfg.requireSTARTTLS {
			args = append(args, "--smtp-require-starttls")
		}
		if cfg.requireTLS {
			args = append(args, "--smtp-require-tls")
		}
		if cfg.user != "" {
			authFile := filepath.Join(dir, "smtp-auth")
			// Plain "user:password" lines are accepted by mailpit's htpasswd reader.
			if err := os.WriteFile(authFile, []byte(cfg.user+":"+cfg.password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, "--smtp-auth-file", authFile)
		}
		if cfg.allowInsecureAut {
			args = append(args, "--smtp-auth-allow-insecure")
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start mailpit: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if lastErr = waitMailpit(t, apiURL, smtpAddr, exited); lastErr == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			return smtpAddr, apiURL
		}
		_ = cmd.Process.Kill()
		<-exited
		lastErr = fmt.Errorf("%w; output:\n%s", lastErr, out.String())
	}
	t.Fatalf("mailpit did not start: %v", lastErr)
	return "", ""
}

// waitMailpit polls until both ports answer, the process exits, or the test's deadline nears.
func waitMailpit(t testing.TB, apiURL, smtpAddr string, exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if td, ok := d.Deadline(); ok && td.Before(deadline) {
			deadline = td.Add(-time.Second)
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("mailpit exited: %v", err)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mailpit not ready at %s", apiURL)
		}
		resp, err := http.Get(apiURL + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		conn, err := net.DialTimeout("tcp", smtpAddr, time.Second)
		if err != nil {
			continue
		}
		conn.Close()
		return nil
	}
}

// MailpitAddress is a mailbox as mailpit's API reports it.
type MailpitAddress struct {
	Name    string `json:"Name"`
	Address string `json:"Address"`
}

// MailpitMessage is a message received by mailpit, with its plain-text body (line endings as
// sent: CRLF) and headers.
type MailpitMessage struct {
	ID        string              `json:"ID"`
	MessageID string              `json:"MessageID"`
	From      MailpitAddress      `json:"From"`
	To        []MailpitAddress    `json:"To"`
	Subject   string              `json:"Subject"`
	Username  string              `json:"Username"` // the SMTP AUTH user, recorded for LOGIN only
	Text      string              `json:"Text"`
	Headers   map[string][]string `json:"-"`
}

// MailpitMessages returns every message mailpit holds, newest first, each with its text body and
// headers.
func MailpitMessages(t testing.TB, apiURL string) []MailpitMessage {
	t.Helper()
	var list struct {
		Messages []MailpitMessage `json:"messages"`
	}
	getJSON(t, apiURL+"/api/v1/messages?limit=1000", &list)
	out := make([]MailpitMessage, 0, len(list.Messages))
	for _, m := range list.Messages {
		var full MailpitMessage
		getJSON(t, apiURL+"/api/v1/message/"+m.ID, &full)
		getJSON(t, apiURL+"/api/v1/message/"+m.ID+"/headers", &full.Headers)
		if full.Username == "" {
			full.Username = m.Username // only the listing reports it
		}
		out = append(out, full)
	}
	return out
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
}
