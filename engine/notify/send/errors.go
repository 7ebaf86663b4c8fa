// Package send delivers one notification to one destination: a WeCom group bot, an SMTP server
// or a generic webhook. Each call is one attempt; retrying is the queue's business.
//
// Every error returned is an *Error whose text never contains the destination's secrets: WeCom
// keys live in the webhook URL's query string, generic webhooks often carry a token in the path,
// and SMTP has a password, so endpoints are named by scheme and host only and any secret string
// that a receiver echoes back is replaced by [redacted].
package send

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/textproto"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Kind classifies a delivery error for operators. It does not change the retry schedule.
type Kind string

const (
	KindAuth        Kind = "auth"         // credentials or key refused
	KindRateLimited Kind = "rate_limited" // the receiver asked us to slow down
	KindNetwork     Kind = "network"      // connection, DNS, TLS or timeout
	KindUnknown     Kind = "unknown"
)

// Error is a failed delivery attempt.
type Error struct {
	Kind Kind
	// RetryAfter is how long the receiver asked us to wait (Retry-After of a 429 or 503), 0 if it
	// did not say.
	RetryAfter time.Duration
	msg        string
	cause      error
}

func (e *Error) Error() string { return e.msg }

// Unwrap gives the cause for errors.Is/As. It is never a *url.Error, whose text holds the URL.
func (e *Error) Unwrap() error { return e.cause }

// Classify returns the kind of a delivery error: from an *Error's Kind when it has one, from the
// error's type (network and TLS errors, SMTP reply codes) where that says enough, and from its
// text otherwise.
func Classify(err error) Kind {
	if err == nil {
		return ""
	}
	var se *Error
	if errors.As(err, &se) && se.Kind != "" {
		return se.Kind
	}
	if k := classifyType(err); k != "" {
		return k
	}
	return ClassifyText(err.Error())
}

func classifyType(err error) Kind {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		switch tp.Code {
		case 530, 534, 535, 538: // authentication required / too weak / failed / needs encryption
			return KindAuth
		case 421: // service not available, closing channel
			return KindNetwork
		}
	}
	var (
		netErr  net.Error
		opErr   *net.OpError
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		unkAuth x509.UnknownAuthorityError
		hostErr x509.HostnameError
		recErr  tls.RecordHeaderError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &dnsErr), errors.As(err, &opErr), errors.As(err, &netErr),
		errors.As(err, &certErr), errors.As(err, &unkAuth), errors.As(err, &hostErr), errors.As(err, &recErr):
		return KindNetwork
	}
	return ""
}

// ClassifyText applies the original's text rules, for errors that carry no type information.
func ClassifyText(text string) Kind {
	s := strings.ToLower(text)
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(s, w) {
				return true
			}
		}
		return false
	}
	switch {
	case has("401", "403", "unauthorized", "forbidden", "auth"):
		return KindAuth
	case has("429", "too many requests", "rate limit"):
		return KindRateLimited
	case has("timeout", "timed out", "connection", "dns", "network"):
		return KindNetwork
	}
	return KindUnknown
}

// RetryAfter returns the receiver's requested delay carried by err, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var se *Error
	if errors.As(err, &se) && se.RetryAfter > 0 {
		return se.RetryAfter, true
	}
	return 0, false
}

// redactor removes secret strings from text that may reach logs, events or API answers.
type redactor []string

const redacted = "[redacted]"

// minRedactLen keeps very short values (a 1-character "password") from shredding every message
// they happen to occur in; such values protect nothing anyway.
const minRedactLen = 4

func newRedactor(secrets ...string) redactor {
	var r redactor
	for _, s := range secrets {
		if len(s) >= minRedactLen {
			r = append(r, s)
			if esc := url.QueryEscape(s); esc != s {
				r = append(r, esc)
			}
		}
	}
	// Longest first, so that a URL is replaced whole before its query value is.
	sort.Slice(r, func(i, j int) bool { return len(r[i]) > len(r[j]) })
	return r
}

// urlSecrets lists the parts of a webhook URL that may be credentials: the URL itself, its
// query string and values, fragment, user info and long path segments (Slack-style tokens).
func urlSecrets(raw string) []string {
	out := []string{raw}
	u, err := url.Parse(raw)
	if err != nil {
		return out
	}
	out = append(out, u.RawQuery, u.Fragment, u.User.String())
	for _, vs := range u.Query() {
		out = append(out, vs...)
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if len(seg) >= 16 {
			out = append(out, seg)
		}
	}
	return out
}

func (r redactor) apply(s string) string {
	for _, sec := range r {
		s = strings.ReplaceAll(s, sec, redacted)
	}
	return s
}

// endpoint names a URL by scheme and host only.
func endpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid url)"
	}
	return u.Scheme + "://" + u.Host
}

// newError builds an *Error whose message is redacted. cause is kept for errors.Is/As with any
// *url.Error layer removed.
func newError(kind Kind, r redactor, msg string, cause error) *Error {
	var ue *url.Error
	if errors.As(cause, &ue) {
		cause = ue.Err
	}
	if kind == "" {
		kind = Classify(cause)
		if kind == "" || kind == KindUnknown {
			kind = ClassifyText(msg)
		}
	}
	return &Error{Kind: kind, msg: r.apply(msg), cause: cause}
}

// causeText is an error's text without the URL a *url.Error would print.
func causeText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return "timeout: " + ue.Err.Error()
		}
		return ue.Err.Error()
	}
	return err.Error()
}

// NewError is the error a channel driver returns for a failed attempt: msg with every one of
// secrets (and the credentials of any URL among them) redacted, classified as kind, or from cause
// and msg when kind is "". The worker reads its kind and Retry-After.
func NewError(kind Kind, msg string, cause error, secrets ...string) *Error {
	var all []string
	for _, s := range secrets {
		all = append(all, s)
		all = append(all, urlSecrets(s)...)
	}
	return newError(kind, newRedactor(all...), msg, cause)
}
