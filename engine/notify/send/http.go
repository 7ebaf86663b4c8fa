package send

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/engine/secrets"
)

// Header names of webhook deliveries.
const (
	// HeaderDelivery carries the notification id: the same on every attempt of one notification,
	// so a receiver can drop a repeat.
	HeaderDelivery = "X-Bastion-Delivery"
	// HeaderEvent names the event (run_finished, test).
	HeaderEvent = "X-Bastion-Event"
	// HeaderSignature is "sha256=<hex HMAC-SHA256 of the body>" keyed with the webhook's secret.
	HeaderSignature = "X-Bastion-Signature"
)

// Default per-attempt timeouts.
const (
	WeComTimeout   = 10 * time.Second
	WebhookTimeout = 10 * time.Second
)

// maxExcerpt bounds how much of a receiver's answer goes into an error message.
const maxExcerpt = 256

// HTTP sends to WeCom group bots and generic webhooks.
type HTTP struct {
	// Client is used for every request; nil means a client that never follows redirects (a
	// redirected POST would arrive as a bodiless GET, possibly at another host).
	Client *http.Client
	// Now reads the clock for Retry-After dates; nil means time.Now.
	Now func() time.Time
	// WeComTimeout and WebhookTimeout bound one attempt; zero means the defaults.
	WeComTimeout, WebhookTimeout time.Duration
}

var noRedirectClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (h HTTP) client() *http.Client {
	if h.Client != nil {
		return h.Client
	}
	return noRedirectClient
}

func (h HTTP) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

type httpAnswer struct {
	status     int
	body       []byte
	retryAfter time.Duration
}

// post sends body and reads up to 64 KiB of the answer.
func (h HTTP) post(ctx context.Context, what, rawURL string, timeout time.Duration, body []byte,
	headers map[string]string, r redactor) (httpAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return httpAnswer{}, newError(KindUnknown, r, fmt.Sprintf("%s: build request: %s", what, causeText(err)), err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Bastion")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := h.client().Do(req)
	if err != nil {
		kind := Kind("")
		if errors.Is(err, context.DeadlineExceeded) {
			kind = KindNetwork
		}
		return httpAnswer{}, newError(kind, r, fmt.Sprintf("%s request to %s failed: %s", what, endpoint(rawURL), causeText(err)), err)
	}
	defer resp.Body.Close()
	ans := httpAnswer{status: resp.StatusCode}
	ans.body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return ans, newError(KindNetwork, r, fmt.Sprintf("%s: read answer from %s: %s", what, endpoint(rawURL), causeText(err)), err)
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		ans.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), h.now())
	}
	return ans, nil
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent, invalid or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(365*24*3600))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// excerpt is a receiver's answer shortened and redacted for an error message.
func excerpt(b []byte, r redactor) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	if len(s) > maxExcerpt {
		s = strings.ToValidUTF8(s[:maxExcerpt], "") + "…"
	}
	if s == "" {
		s = "(empty body)"
	}
	return r.apply(s)
}

func statusKind(status int) Kind {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return KindAuth
	case http.StatusTooManyRequests:
		return KindRateLimited
	case http.StatusRequestTimeout, http.StatusBadGateway, http.StatusGatewayTimeout:
		return KindNetwork
	}
	return KindUnknown
}

func (h HTTP) statusError(what string, ans httpAnswer, r redactor) *Error {
	e := newError(statusKind(ans.status), r, fmt.Sprintf("%s http %d: %s", what, ans.status, excerpt(ans.body, r)), nil)
	e.RetryAfter = ans.retryAfter
	return e
}

// WeCom error codes with a known meaning: 45009 is the bot's rate limit (20 messages a minute);
// the others say the key is wrong or revoked.
var wecomCodeKinds = map[int]Kind{
	45009: KindRateLimited,
	93000: KindAuth, // invalid webhook url (key)
	40001: KindAuth,
	40014: KindAuth,
	42001: KindAuth,
}

// WeCom posts a markdown message to a WeCom group bot. Success is HTTP 2xx with a JSON body
// whose errcode is 0. deliveryID is sent as X-Bastion-Delivery (WeCom ignores it).
func (h HTTP) WeCom(ctx context.Context, p secrets.WeComBot, markdown, deliveryID string) error {
	r := newRedactor(urlSecrets(p.WebhookURL)...)
	body, err := json.Marshal(map[string]any{"msgtype": "markdown", "markdown": map[string]string{"content": markdown}})
	if err != nil {
		return newError(KindUnknown, r, "wecom webhook: encode message: "+err.Error(), err)
	}
	timeout := h.WeComTimeout
	if timeout <= 0 {
		timeout = WeComTimeout
	}
	ans, err := h.post(ctx, "wecom webhook", p.WebhookURL, timeout, body, map[string]string{HeaderDelivery: deliveryID}, r)
	if err != nil {
		return err
	}
	if ans.status < 200 || ans.status > 299 {
		return h.statusError("wecom webhook", ans, r)
	}
	var res struct {
		ErrCode *int   `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(ans.body, &res); err != nil || res.ErrCode == nil {
		return newError(KindUnknown, r, fmt.Sprintf("wecom webhook http %d: unexpected answer: %s", ans.status, excerpt(ans.body, r)), nil)
	}
	if *res.ErrCode != 0 {
		kind, ok := wecomCodeKinds[*res.ErrCode]
		if !ok {
			kind = ""
		}
		return newError(kind, r, fmt.Sprintf("wecom webhook error %d: %s", *res.ErrCode, excerpt([]byte(res.ErrMsg), r)), nil)
	}
	return nil
}

// Signature is the X-Bastion-Signature value of body under key.
func Signature(key string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Webhook posts body (JSON) to a generic webhook. Success is any 2xx answer. The request carries
// X-Bastion-Delivery: deliveryID, X-Bastion-Event: event and, when the webhook has a secret,
// X-Bastion-Signature.
func (h HTTP) Webhook(ctx context.Context, p secrets.Webhook, event string, body []byte, deliveryID string) error {
	r := newRedactor(append(urlSecrets(p.URL), p.Secret)...)
	headers := map[string]string{HeaderDelivery: deliveryID, HeaderEvent: event}
	if p.Secret != "" {
		headers[HeaderSignature] = Signature(p.Secret, body)
	}
	timeout := h.WebhookTimeout
	if timeout <= 0 {
		timeout = WebhookTimeout
	}
	ans, err := h.post(ctx, "webhook", p.URL, timeout, body, headers, r)
	if err != nil {
		return err
	}
	if ans.status < 200 || ans.status > 299 {
		return h.statusError("webhook", ans, r)
	}
	return nil
}

// Post sends body (JSON) to rawURL for a channel driver and succeeds on any 2xx answer; what
// names the channel in error messages ("pager"). Every value of secrets (and the credentials of
// rawURL) is redacted from errors; a 429 or 503 answer's Retry-After is kept for the worker.
// Zero timeout means WebhookTimeout.
func (h HTTP) Post(ctx context.Context, what, rawURL string, timeout time.Duration, body []byte,
	headers map[string]string, secrets ...string) error {
	r := newRedactor(append(urlSecrets(rawURL), secrets...)...)
	if timeout <= 0 {
		timeout = WebhookTimeout
	}
	ans, err := h.post(ctx, what, rawURL, timeout, body, headers, r)
	if err != nil {
		return err
	}
	if ans.status < 200 || ans.status > 299 {
		return h.statusError(what, ans, r)
	}
	return nil
}
