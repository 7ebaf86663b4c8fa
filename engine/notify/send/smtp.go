package send

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/bastion-backup/bastion/engine/secrets"
)

// SMTPTimeout bounds each step of an SMTP session (connect, each command); SMTPAttemptTimeout
// bounds a whole attempt.
const (
	SMTPTimeout        = 15 * time.Second
	SMTPAttemptTimeout = 60 * time.Second
)

// Email is one plain-text message.
type Email struct {
	Subject string
	Body    string
	// ID is the notification id. The Message-ID is derived from it, so every attempt of one
	// notification carries the same Message-ID and a receiver can drop a repeat.
	ID   string
	Date time.Time
}

// MessageID is the Message-ID (without angle brackets) of notification id sent from from.
func MessageID(id, from string) string {
	domain := "bastion.invalid"
	if a, err := mail.ParseAddress(from); err == nil {
		if at := strings.LastIndexByte(a.Address, '@'); at >= 0 && at < len(a.Address)-1 {
			domain = a.Address[at+1:]
		}
	}
	return "bastion-notification-" + id + "@" + domain
}

// SMTP sends email.
type SMTP struct {
	// Timeout bounds each step of the session, AttemptTimeout the whole attempt; zero means the
	// defaults.
	Timeout, AttemptTimeout time.Duration
}

// Send delivers m from p.From to every p.To. tls "none" is a plain connection, "starttls"
// requires the STARTTLS upgrade, "implicit" speaks TLS from the first byte. The server's
// certificate is checked against the system roots plus p.CACert. AUTH is used only when a
// username is set; on a plain connection that sends the password in the clear, as configured.
func (s SMTP) Send(ctx context.Context, p secrets.SMTP, m Email) error {
	r := newRedactor(p.Password)
	fail := func(kind Kind, err error, format string, args ...any) error {
		return newError(kind, r, fmt.Sprintf("smtp %s: ", net.JoinHostPort(p.Host, strconv.Itoa(p.Port)))+fmt.Sprintf(format, args...), err)
	}
	stepTimeout, attemptTimeout := s.Timeout, s.AttemptTimeout
	if stepTimeout <= 0 {
		stepTimeout = SMTPTimeout
	}
	if attemptTimeout <= 0 {
		attemptTimeout = SMTPAttemptTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()

	tlsConf, err := tlsConfig(p)
	if err != nil {
		return fail(KindUnknown, err, "%s", err.Error())
	}

	msg := gomail.NewMsg()
	if err := msg.From(p.From); err != nil {
		return fail(KindUnknown, err, "invalid from address")
	}
	if err := msg.To(p.To...); err != nil {
		return fail(KindUnknown, err, "invalid recipient address")
	}
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(MessageID(m.ID, p.From))
	if m.Date.IsZero() {
		msg.SetDate()
	} else {
		msg.SetDateWithValue(m.Date)
	}
	msg.SetBodyString(gomail.TypeTextPlain, m.Body)

	// go-mail bounds each command by its timeout but watches the context only while dialing, so
	// the connection is closed when ctx ends: shutdown and the attempt timeout then interrupt a
	// stalled server at once.
	var (
		mu    sync.Mutex
		stops []func() bool
	)
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, stop := range stops {
			stop()
		}
	}()
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		if p.TLS == "implicit" {
			tc := tls.Client(conn, tlsConf)
			if err := tc.HandshakeContext(dctx); err != nil {
				conn.Close()
				return nil, err
			}
			conn = tc
		}
		mu.Lock()
		stops = append(stops, context.AfterFunc(ctx, func() { conn.Close() }))
		mu.Unlock()
		return conn, nil
	}

	opts := []gomail.Option{
		gomail.WithPort(p.Port),
		gomail.WithTimeout(stepTimeout),
		gomail.WithTLSConfig(tlsConf),
		gomail.WithDialContextFunc(dial),
	}
	switch p.TLS {
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case "starttls":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case "implicit":
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSPolicy(gomail.NoTLS), gomail.WithPort(p.Port))
	default:
		return fail(KindUnknown, nil, "unknown tls mode %q", p.TLS)
	}
	if p.Username != "" {
		// Mechanisms in order of preference. Password-revealing ones (PLAIN, LOGIN) are allowed
		// without TLS only because the destination was configured with tls "none".
		mechs := []gomail.SMTPAuthType{gomail.SMTPAuthSCRAMSHA256PLUS, gomail.SMTPAuthSCRAMSHA256,
			gomail.SMTPAuthSCRAMSHA1PLUS, gomail.SMTPAuthSCRAMSHA1, gomail.SMTPAuthCramMD5, gomail.SMTPAuthPlain, gomail.SMTPAuthLogin}
		if p.TLS == "none" {
			mechs = []gomail.SMTPAuthType{gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1,
				gomail.SMTPAuthCramMD5, gomail.SMTPAuthPlainNoEnc, gomail.SMTPAuthLoginNoEnc}
		}
		opts = append(opts, gomail.WithOpportunisticSMTPAuth(mechs...),
			gomail.WithUsername(p.Username), gomail.WithPassword(p.Password))
	}
	client, err := gomail.NewClient(p.Host, opts...)
	if err != nil {
		return fail(KindUnknown, err, "configure client: %s", err.Error())
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fail(KindNetwork, errors.Join(ctxErr, err), "attempt interrupted (%s): %s", ctxErr.Error(), err.Error())
		}
		kind := Kind("")
		if isAuthFailure(err) {
			kind = KindAuth
		}
		return fail(kind, err, "%s", err.Error())
	}
	return nil
}

// isAuthFailure recognises go-mail's AUTH errors, which wrap the server's reply only as text
// in some paths.
func isAuthFailure(err error) bool {
	if errors.Is(err, gomail.ErrNoSupportedAuthDiscovered) {
		return true
	}
	return strings.Contains(err.Error(), "SMTP AUTH failed") || strings.Contains(err.Error(), "does not support SMTP AUTH")
}

func tlsConfig(p secrets.SMTP) (*tls.Config, error) {
	conf := &tls.Config{ServerName: p.Host, MinVersion: tls.VersionTLS12}
	if p.CACert == "" {
		return conf, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM([]byte(p.CACert)) {
		return nil, errors.New("ca_cert holds no PEM certificate")
	}
	conf.RootCAs = pool
	return conf, nil
}
