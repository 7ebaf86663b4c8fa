package send

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/secrets"
)

const wecomKey = "0a1b2c3d-secret-wecom-key-4e5f"

type recorded struct {
	header http.Header
	body   []byte
	path   string
}

// receiver is an httptest server answering with handler and recording each request.
func receiver(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, <-chan recorded) {
	t.Helper()
	got := make(chan recorded, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- recorded{header: r.Header.Clone(), body: b, path: r.URL.String()}
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func answer(status int, body string, headers ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestWeCom(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	h := HTTP{Now: func() time.Time { return now }, WeComTimeout: 200 * time.Millisecond}
	for _, tc := range []struct {
		name        string
		handler     func(http.ResponseWriter, *http.Request)
		wantErr     string // substring; empty: success
		kind        Kind
		retryAfter  time.Duration
		mustNotLeak bool
	}{
		{name: "Success", handler: answer(200, `{"errcode":0,"errmsg":"ok"}`)},
		{name: "ErrCode", handler: answer(200, `{"errcode":93000,"errmsg":"invalid webhook url, hint: [x]"}`),
			wantErr: "wecom webhook error 93000: invalid webhook url, hint: [x]", kind: KindAuth},
		{name: "RateLimitErrCode", handler: answer(200, `{"errcode":45009,"errmsg":"api freq out of limit"}`),
			wantErr: "wecom webhook error 45009: api freq out of limit", kind: KindRateLimited},
		{name: "UnknownErrCode", handler: answer(200, `{"errcode":300001,"errmsg":"something else"}`),
			wantErr: "wecom webhook error 300001: something else", kind: KindUnknown},
		{name: "NotJSON", handler: answer(200, `<html>proxy</html>`), wantErr: "unexpected answer: <html>proxy</html>", kind: KindUnknown},
		{name: "TooManyRequests", handler: answer(429, `slow down`, "Retry-After", "120"),
			wantErr: "wecom webhook http 429: slow down", kind: KindRateLimited, retryAfter: 120 * time.Second},
		{name: "Unavailable", handler: answer(503, ``, "Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)),
			wantErr: "wecom webhook http 503: (empty body)", kind: KindUnknown, retryAfter: 90 * time.Second},
		{name: "ServerErrorEchoingTheKey", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			io.WriteString(w, "bad request to "+r.URL.String())
		}, wantErr: "wecom webhook http 500: bad request to /cgi-bin/webhook/send?[redacted]", kind: KindUnknown, mustNotLeak: true},
		{name: "Unauthorized", handler: answer(401, `no`), wantErr: "wecom webhook http 401: no", kind: KindAuth},
		{name: "HangsPastTimeout", handler: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			wantErr: "wecom webhook request to http://127.0.0.1", kind: KindNetwork, mustNotLeak: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, got := receiver(t, tc.handler)
			hook := secrets.WeComBot{WebhookURL: srv.URL + "/cgi-bin/webhook/send?key=" + wecomKey}
			err := h.WeCom(context.Background(), hook, "**Bastion** > Job: x", "notif-1")
			req := <-got
			var sent struct {
				MsgType  string            `json:"msgtype"`
				Markdown map[string]string `json:"markdown"`
			}
			if err := json.Unmarshal(req.body, &sent); err != nil || sent.MsgType != "markdown" || sent.Markdown["content"] != "**Bastion** > Job: x" {
				t.Fatalf("sent %s (%v)", req.body, err)
			}
			if req.header.Get(HeaderDelivery) != "notif-1" || req.header.Get("Content-Type") != "application/json" {
				t.Fatalf("headers %v", req.header)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), wecomKey) || strings.Contains(err.Error(), "key=") {
				t.Fatalf("error leaks the key: %v", err)
			}
			if k := Classify(err); k != tc.kind {
				t.Errorf("kind = %s, want %s", k, tc.kind)
			}
			if ra, _ := RetryAfter(err); ra != tc.retryAfter {
				t.Errorf("retry after = %s, want %s", ra, tc.retryAfter)
			}
		})
	}
}

func TestWebhookSignsAndCarriesTheDeliveryID(t *testing.T) {
	t.Parallel()
	srv, got := receiver(t, answer(204, ""))
	body := []byte(`{"event":"run_finished","run_id":"r1"}`)
	err := HTTP{}.Webhook(context.Background(), secrets.Webhook{URL: srv.URL + "/hooks/in", Secret: "s3cr3t-key"}, "run_finished", body, "notif-7")
	if err != nil {
		t.Fatal(err)
	}
	req := <-got
	if string(req.body) != string(body) {
		t.Fatalf("body = %s", req.body)
	}
	// Reference value: printf '%s' "$body" | openssl dgst -sha256 -hmac s3cr3t-key
	if sig := req.header.Get(HeaderSignature); sig != Signature("s3cr3t-key", body) || !strings.HasPrefix(sig, "sha256=") || len(sig) != 7+64 {
		t.Fatalf("signature = %q", sig)
	}
	if req.header.Get(HeaderDelivery) != "notif-7" || req.header.Get(HeaderEvent) != "run_finished" ||
		req.header.Get("Content-Type") != "application/json" {
		t.Fatalf("headers = %v", req.header)
	}

	// Without a secret there is no signature.
	if err := (HTTP{}).Webhook(context.Background(), secrets.Webhook{URL: srv.URL}, "test", body, "n"); err != nil {
		t.Fatal(err)
	}
	if req := <-got; req.header.Get(HeaderSignature) != "" {
		t.Fatalf("unsigned webhook got signature %q", req.header.Get(HeaderSignature))
	}
}

func TestSignatureKnownValue(t *testing.T) {
	t.Parallel()
	// RFC 4231 test case 2.
	if got := Signature("Jefe", []byte("what do ya want for nothing?")); got != "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" {
		t.Fatalf("signature = %s", got)
	}
}

func TestWebhookErrors(t *testing.T) {
	t.Parallel()
	const pathToken = "T000ABCD/B000EFGH/XXXXxxxxXXXXxxxxXXXX"
	for _, tc := range []struct {
		name       string
		handler    func(http.ResponseWriter, *http.Request)
		wantErr    string
		kind       Kind
		retryAfter time.Duration
	}{
		{"Redirect", answer(302, "", "Location", "http://elsewhere.invalid/"), "webhook http 302", KindUnknown, 0},
		{"TooManyRequests", answer(429, "", "Retry-After", "7"), "webhook http 429", KindRateLimited, 7 * time.Second},
		{"Forbidden", answer(403, "bad signature"), "webhook http 403: bad signature", KindAuth, 0},
		{"EchoesSecrets", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			io.WriteString(w, "path "+r.URL.Path+" sig "+r.Header.Get(HeaderSignature)+" key hook-signing-secret")
		}, "webhook http 500: path /services/T000ABCD/B000EFGH/[redacted] sig sha256=", KindUnknown, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, got := receiver(t, tc.handler)
			err := HTTP{}.Webhook(context.Background(), secrets.Webhook{URL: srv.URL + "/services/" + pathToken, Secret: "hook-signing-secret"}, "test", []byte(`{}`), "n")
			<-got
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			for _, secret := range []string{"XXXXxxxxXXXXxxxxXXXX", "hook-signing-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error leaks %q: %v", secret, err)
				}
			}
			if k := Classify(err); k != tc.kind {
				t.Errorf("kind = %s, want %s", k, tc.kind)
			}
			if ra, _ := RetryAfter(err); ra != tc.retryAfter {
				t.Errorf("retry after = %s, want %s", ra, tc.retryAfter)
			}
		})
	}
}

func TestWebhookConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/x?token=abcdefgh12345"
	srv.Close()
	err := HTTP{}.Webhook(context.Background(), secrets.Webhook{URL: url}, "test", []byte(`{}`), "n")
	if err == nil || Classify(err) != KindNetwork || strings.Contains(err.Error(), "abcdefgh12345") {
		t.Fatalf("err = %v (kind %s), want a network error without the token", err, Classify(err))
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("err is %T, want *Error", err)
	}
}

func TestClassifyText(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]Kind{
		"http 401":                      KindAuth,
		"Forbidden":                     KindAuth,
		"535 Authentication failed":     KindAuth,
		"HTTP 429 Too Many Requests":    KindRateLimited,
		"rate limit exceeded":           KindRateLimited,
		"i/o timeout":                   KindNetwork,
		"connection reset by peer":      KindNetwork,
		"dns lookup failed":             KindNetwork,
		"network is unreachable":        KindNetwork,
		"wecom webhook error 1: broken": KindUnknown,
	} {
		if got := ClassifyText(text); got != want {
			t.Errorf("ClassifyText(%q) = %s, want %s", text, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":    0,
		"0":   0,
		"-5":  0,
		"30":  30 * time.Second,
		"abc": 0,
		now.Add(45 * time.Second).Format(http.TimeFormat): 45 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}
