package send

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/testtool"
)

func smtpDest(t *testing.T, addr, tlsMode string) secrets.SMTP {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return secrets.SMTP{Host: host, Port: p, From: "Bastion <bastion@example.test>",
		To: []string{"ops@example.test", "Second <second@example.test>"}, TLS: tlsMode}
}

func sendOne(t *testing.T, p secrets.SMTP, id string) error {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatalf("destination does not validate: %v", err)
	}
	return SMTP{Timeout: 10 * time.Second}.Send(context.Background(), p, Email{
		Subject: "Bastion Failed - Nightly", Body: "Bastion backup\n\nJob: Nightly\nRün: ✓\n", ID: id,
		Date: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	})
}

// checkDelivered asserts the one message mailpit holds. Whether AUTH happened is proven by the
// server configurations that require it (mailpit records the user only for LOGIN, not PLAIN).
func checkDelivered(t *testing.T, apiURL, id string) {
	t.Helper()
	msgs := testtool.MailpitMessages(t, apiURL)
	if len(msgs) != 1 {
		t.Fatalf("mailpit holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.MessageID != MessageID(id, "bastion@example.test") || m.MessageID != "bastion-notification-"+id+"@example.test" {
		t.Errorf("Message-ID = %q", m.MessageID)
	}
	if m.From.Address != "bastion@example.test" || len(m.To) != 2 || m.To[0].Address != "ops@example.test" || m.To[1].Address != "second@example.test" {
		t.Errorf("from/to = %+v %+v", m.From, m.To)
	}
	if m.Subject != "Bastion Failed - Nightly" || strings.ReplaceAll(m.Text, "\r\n", "\n") != "Bastion backup\n\nJob: Nightly\nRün: ✓\n" {
		t.Errorf("subject %q, text %q", m.Subject, m.Text)
	}
	if ct := strings.Join(m.Headers["Content-Type"], ";"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}
}

func TestSMTPPlain(t *testing.T) {
	t.Parallel()
	addr, api := testtool.StartMailpit(t)
	if err := sendOne(t, smtpDest(t, addr, "none"), "n-plain"); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, api, "n-plain")
}

func TestSMTPPlainWithAuthOverInsecureConnection(t *testing.T) {
	t.Parallel()
	addr, api := testtool.StartMailpit(t, testtool.MailpitAuth("mailer", "pw-plain-1234"), testtool.MailpitInsecureAuth())
	p := smtpDest(t, addr, "none")
	p.Username, p.Password = "mailer", "pw-plain-1234"
	if err := sendOne(t, p, "n-plain-auth"); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, api, "n-plain-auth")
}

func TestSMTPStartTLSWithTrustedSelfSignedCert(t *testing.T) {
	t.Parallel()
	cert := testtool.SelfSignedCert(t)
	addr, api := testtool.StartMailpit(t, testtool.MailpitTLS(cert), testtool.MailpitRequireSTARTTLS(),
		testtool.MailpitAuth("mailer", "correct-horse-battery"))
	p := smtpDest(t, addr, "starttls")
	p.Username, p.Password, p.CACert = "mailer", "correct-horse-battery", string(cert.CertPEM)
	if err := sendOne(t, p, "n-starttls"); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, api, "n-starttls")
}

func TestSMTPWrongPasswordIsAnAuthError(t *testing.T) {
	t.Parallel()
	cert := testtool.SelfSignedCert(t)
	addr, api := testtool.StartMailpit(t, testtool.MailpitTLS(cert), testtool.MailpitAuth("mailer", "right-password"))
	p := smtpDest(t, addr, "starttls")
	p.Username, p.Password, p.CACert = "mailer", "wrong-password-xyz", string(cert.CertPEM)
	err := sendOne(t, p, "n-wrong")
	if err == nil {
		t.Fatal("sent with a wrong password")
	}
	if Classify(err) != KindAuth {
		t.Errorf("kind = %s, want auth (%v)", Classify(err), err)
	}
	if strings.Contains(err.Error(), "wrong-password-xyz") {
		t.Errorf("error leaks the password: %v", err)
	}
	if n := len(testtool.MailpitMessages(t, api)); n != 0 {
		t.Errorf("mailpit holds %d messages", n)
	}
}

func TestSMTPUntrustedCertificateIsRefused(t *testing.T) {
	t.Parallel()
	cert := testtool.SelfSignedCert(t)
	addr, api := testtool.StartMailpit(t, testtool.MailpitTLS(cert), testtool.MailpitRequireSTARTTLS())
	err := sendOne(t, smtpDest(t, addr, "starttls"), "n-untrusted")
	if err == nil {
		t.Fatal("sent over TLS to a server whose certificate is not trusted")
	}
	if Classify(err) != KindNetwork {
		t.Errorf("kind = %s, want network (%v)", Classify(err), err)
	}
	if n := len(testtool.MailpitMessages(t, api)); n != 0 {
		t.Errorf("mailpit holds %d messages", n)
	}
}

func TestSMTPStartTLSRequiredButNotOffered(t *testing.T) {
	t.Parallel()
	addr, _ := testtool.StartMailpit(t)
	err := sendOne(t, smtpDest(t, addr, "starttls"), "n-downgrade")
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("err = %v, want a refusal to continue without STARTTLS", err)
	}
}

func TestSMTPImplicitTLS(t *testing.T) {
	t.Parallel()
	cert := testtool.SelfSignedCert(t)
	addr, api := testtool.StartMailpit(t, testtool.MailpitTLS(cert), testtool.MailpitImplicitTLS(),
		testtool.MailpitAuth("mailer", "implicit-pass"))
	p := smtpDest(t, addr, "implicit")
	p.Username, p.Password, p.CACert = "mailer", "implicit-pass", string(cert.CertPEM)
	if err := sendOne(t, p, "n-implicit"); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, api, "n-implicit")
}

func TestSMTPConnectionRefused(t *testing.T) {
	t.Parallel()
	port := testtool.FreePort(t)
	err := sendOne(t, smtpDest(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "none"), "n")
	if err == nil || Classify(err) != KindNetwork {
		t.Fatalf("err = %v (kind %s), want a network error", err, Classify(err))
	}
}

func TestSMTPStalledServerIsInterruptedByTheContext(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c // never greets
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- SMTP{Timeout: time.Hour}.Send(ctx, smtpDest(t, l.Addr().String(), "none"), Email{Subject: "s", Body: "b", ID: "n"})
	}()
	conn := <-accepted
	defer conn.Close()
	cancel()
	if err := <-done; err == nil || Classify(err) != KindNetwork {
		t.Fatalf("err = %v, want an interrupted (network) error", err)
	}
}
