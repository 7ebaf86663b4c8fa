package httpapi_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/bastion-backup/bastion/httpapi"
	"github.com/bastion-backup/bastion/httpapi/apitest"
)

const (
	webdavPassword  = "webdav-Pa55-unique-7781"
	smtpPassword    = "smtp-Pa55-unique-2290"
	wecomKey        = "wecomkey-unique-5521"
	webhookSecret   = "hook-signing-unique-8843"
	webhookURLToken = "hookpath-unique-1177"
)

var (
	webdavBody  = map[string]any{"username": "alice", "password": webdavPassword}
	smtpBody    = map[string]any{"host": "mail.example", "port": 587, "username": "alice", "password": smtpPassword, "from": "Bastion <bastion@example.org>", "to": []string{"ops@example.org"}, "tls": "starttls"}
	wecomBody   = map[string]any{"webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=" + wecomKey}
	webhookBody = map[string]any{"url": "https://hooks.example/" + webhookURLToken, "secret": webhookSecret}
)

type deletion struct{ kind, name string }

func startWithHook(t *testing.T) (*apitest.Hub, func() []deletion) {
	t.Helper()
	var mu sync.Mutex
	var got []deletion
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) {
		cfg.OnSecretDeleted = func(ctx context.Context, kind, name string) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, deletion{kind, name})
			if name == "fails" {
				return errors.New("hook failed on purpose")
			}
			return nil
		}
	}))
	return hub, func() []deletion { mu.Lock(); defer mu.Unlock(); return append([]deletion(nil), got...) }
}

func TestSecretsAPI(t *testing.T) {
	t.Parallel()
	hub, deleted := startWithHook(t)
	c := hub.Login(t)

	if r := c.Do(t, "GET", "/api/secrets/webdav", nil); r.Status != 200 || string(r.Body) != "[]\n" {
		t.Fatalf("empty list: %v", r)
	}
	for _, tc := range []struct {
		seg, kind string
		body      map[string]any
		check     string
	}{
		{"webdav", "webdav", webdavBody, webdavPassword},
		{"smtp", "smtp", smtpBody, smtpPassword},
		{"wecom-bot", "wecom_bot", wecomBody, wecomKey},
		{"webhook", "webhook", webhookBody, webhookSecret},
	} {
		t.Run(tc.seg, func(t *testing.T) {
			if st, m := c.Put(t, "/api/secrets/"+tc.seg+"/primary", tc.body); st != 204 {
				t.Fatalf("put: %d %v", st, m)
			}
			hub.Clock.Advance(1)
			r := c.Do(t, "GET", "/api/secrets/"+tc.seg, nil)
			items := r.JSONArray(t)
			if r.Status != 200 || len(items) != 1 || strings.Contains(string(r.Body), tc.check) {
				t.Fatalf("list: %v", r)
			}
			item := items[0].(map[string]any)
			// A WebDAV credential also lists the servers it may be sent to (none yet here).
			want := 2
			if tc.kind == "webdav" {
				want = 3
				if o, ok := item["allowed_origins"].([]any); !ok || len(o) != 0 {
					t.Fatalf("list item origins: %v", item)
				}
			}
			if item["name"] != "primary" || item["updated_at"] == nil || len(item) != want {
				t.Fatalf("list item: %v", item)
			}
			r = c.Do(t, "GET", "/api/secrets/"+tc.seg+"/primary", nil)
			m := r.JSON(t)
			if r.Status != 200 || m["name"] != "primary" || !strings.Contains(string(r.Body), tc.check) || r.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("get: %v", r)
			}
			for k := range tc.body {
				if _, ok := m[k]; !ok {
					t.Fatalf("get lacks %s: %v", k, m)
				}
			}
			var kind string
			hub.DB.Reader().QueryRow(context.Background(), "SELECT kind FROM secrets WHERE name='primary' AND kind=?", tc.kind).Scan(&kind)
			if kind != tc.kind {
				t.Fatalf("stored under kind %q, want %q", kind, tc.kind)
			}
		})
	}
	// Upsert replaces.
	if st, _ := c.Put(t, "/api/secrets/webdav/primary", map[string]any{"username": "bob", "password": "new-one"}); st != 204 {
		t.Fatal("upsert")
	}
	if _, m := c.Get(t, "/api/secrets/webdav/primary"); m["username"] != "bob" || m["password"] != "new-one" {
		t.Fatalf("after upsert: %v", m)
	}
	// Names with spaces and non-ASCII letters work, escaped in the path.
	if st, m := c.Put(t, "/api/secrets/webdav/my%20n%C3%A4s", webdavBody); st != 204 {
		t.Fatalf("escaped name: %d %v", st, m)
	}
	if st, m := c.Get(t, "/api/secrets/webdav/my%20n%C3%A4s"); st != 200 || m["name"] != "my näs" {
		t.Fatalf("escaped name: %d %v", st, m)
	}

	if st, _ := c.Delete(t, "/api/secrets/webdav/primary"); st != 204 {
		t.Fatal("delete")
	}
	if st, m := c.Get(t, "/api/secrets/webdav/primary"); st != 404 || m["error"] != "secret_not_found" {
		t.Fatalf("get after delete: %d %v", st, m)
	}
	if st, m := c.Delete(t, "/api/secrets/webdav/primary"); st != 404 || m["error"] != "secret_not_found" {
		t.Fatalf("second delete: %d %v", st, m)
	}
	if st, _ := c.Delete(t, "/api/secrets/wecom-bot/primary"); st != 204 {
		t.Fatal("delete wecom")
	}
	// A failing hook is logged; the delete stands.
	c.Put(t, "/api/secrets/smtp/fails", smtpBody)
	if st, _ := c.Delete(t, "/api/secrets/smtp/fails"); st != 204 {
		t.Fatal("delete with failing hook")
	}
	if len(hub.Logs.Find(t, "after deleting a secret")) != 1 {
		t.Error("hook failure not logged")
	}
	want := []deletion{{"webdav", "primary"}, {"wecom_bot", "primary"}, {"smtp", "fails"}}
	if got := deleted(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("hook calls %v, want %v", got, want)
	}
}

func TestSecretsAPIRefusesBadInputAndChangesNothing(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	c := hub.Login(t)
	for _, tc := range []struct {
		name, method, path string
		body               any
		ctype              string
		status             int
		code, field        string
	}{
		{"UnknownKindList", "GET", "/api/secrets/ftp", nil, "", 404, "unknown_secret_kind", "kind"},
		{"UnderscoreKind", "PUT", "/api/secrets/wecom_bot/x", wecomBody, "", 404, "unknown_secret_kind", "kind"},
		{"AgeIdentityKind", "GET", "/api/secrets/backup_age_identity/x", nil, "", 404, "unknown_secret_kind", "kind"},
		{"EscapedSlash", "PUT", "/api/secrets/webdav/a%2Fb", webdavBody, "", 400, "invalid_name", "name"},
		{"Backslash", "PUT", "/api/secrets/webdav/a%5Cb", webdavBody, "", 400, "invalid_name", "name"},
		{"DotDot", "PUT", "/api/secrets/webdav/..", webdavBody, "", 400, "invalid_name", "name"},
		{"EscapedDotDot", "GET", "/api/secrets/webdav/%2E%2E", nil, "", 400, "invalid_name", "name"},
		{"NUL", "PUT", "/api/secrets/webdav/a%00b", webdavBody, "", 400, "invalid_name", "name"},
		{"Newline", "DELETE", "/api/secrets/webdav/a%0Ab", nil, "", 400, "invalid_name", "name"},
		{"LeadingSpace", "PUT", "/api/secrets/webdav/%20nas", webdavBody, "", 400, "invalid_name", "name"},
		{"InvalidUTF8", "PUT", "/api/secrets/webdav/%FF", webdavBody, "", 400, "invalid_name", "name"},
		{"TooLong", "PUT", "/api/secrets/webdav/" + strings.Repeat("n", 129), webdavBody, "", 400, "invalid_name", "name"},
		{"MalformedJSON", "PUT", "/api/secrets/webdav/x", `{"username":"a","password":`, "", 400, "invalid_payload", ""},
		{"EmptyBody", "PUT", "/api/secrets/webdav/x", ``, "", 400, "invalid_payload", ""},
		{"UnknownField", "PUT", "/api/secrets/webdav/x", `{"username":"a","password":"b","url":"x"}`, "", 400, "invalid_payload", ""},
		{"WrongType", "PUT", "/api/secrets/webdav/x", `{"username":"a","password":7}`, "", 400, "invalid_payload", ""},
		{"MissingPassword", "PUT", "/api/secrets/webdav/x", `{"username":"a"}`, "", 400, "invalid_password", "password"},
		{"Array", "PUT", "/api/secrets/webdav/x", `[1]`, "", 400, "invalid_payload", ""},
		{"TrailingData", "PUT", "/api/secrets/webdav/x", `{"username":"a","password":"b"} {}`, "", 400, "invalid_payload", ""},
		{"BlankUsername", "PUT", "/api/secrets/webdav/x", `{"username":" ","password":"b"}`, "", 400, "invalid_username", "username"},
		{"SMTPNoHost", "PUT", "/api/secrets/smtp/x", `{"host":"","port":25,"from":"a@b.c","to":["d@e.f"],"tls":"none"}`, "", 400, "invalid_host", "host"},
		{"S3NoSecretKey", "PUT", "/api/secrets/s3/x", `{"access_key_id":"AK","secret_access_key":""}`, "", 400, "invalid_secret_access_key", "secret_access_key"},
		{"SMTPBadPort", "PUT", "/api/secrets/smtp/x", `{"host":"m","port":0,"from":"a@b.c","to":["d@e.f"],"tls":"none"}`, "", 400, "invalid_port", "port"},
		{"WeComCredentialsInURL", "PUT", "/api/secrets/wecom-bot/x", `{"webhook_url":"https://u:p@qyapi.example/x"}`, "", 400, "invalid_webhook_url", "webhook_url"},
		{"WebhookNotHTTP", "PUT", "/api/secrets/webhook/x", `{"url":"file:///etc/passwd"}`, "", 400, "invalid_webhook_url", "url"},
		{"WrongContentType", "PUT", "/api/secrets/webdav/x", `username=a&password=b`, "application/x-www-form-urlencoded", 415, "unsupported_media_type", ""},
		{"Oversized", "PUT", "/api/secrets/webdav/x", `{"username":"a","password":"` + strings.Repeat("p", 3<<20) + `"}`, "", 413, "payload_too_large", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := *c
			cl.Header = c.Header.Clone()
			if tc.ctype != "" {
				cl.Header.Set("Content-Type", tc.ctype)
			}
			r := cl.Do(t, tc.method, tc.path, tc.body)
			m := r.JSON(t)
			if r.Status != tc.status || m["error"] != tc.code || (tc.field != "" && details(m)["field"] != tc.field) {
				t.Fatalf("got %v", r)
			}
		})
	}
	if n := countRows(t, hub.DB, "secrets"); n != 0 {
		t.Fatalf("refused requests stored %d secrets", n)
	}

	// Authentication comes first.
	anon := hub.Client(t)
	if st, m := anon.Get(t, "/api/secrets/webdav"); st != 401 || m["error"] != "unauthorized" {
		t.Fatalf("list without session: %d %v", st, m)
	}
	csrf := c.CSRF
	c.CSRF = ""
	if st, m := c.Put(t, "/api/secrets/webdav/x", webdavBody); st != 401 || m["error"] != "invalid_csrf" {
		t.Fatalf("put without CSRF: %d %v", st, m)
	}
	c.CSRF = csrf
	if n := countRows(t, hub.DB, "secrets"); n != 0 {
		t.Fatalf("unauthenticated requests stored %d secrets", n)
	}
}

func TestSecretsAPITamperedCiphertext(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t)
	c := hub.Login(t)
	c.Put(t, "/api/secrets/webdav/nas", webdavBody)
	if _, err := hub.DB.Writer().Exec(context.Background(), "UPDATE secrets SET ciphertext = substr(ciphertext, 1, 10)"); err != nil {
		t.Fatal(err)
	}
	r := c.Do(t, "GET", "/api/secrets/webdav/nas", nil)
	m := r.JSON(t)
	msg, _ := m["message"].(string)
	if r.Status != 500 || m["error"] != "secret_undecryptable" || !strings.Contains(msg, "webdav/nas") || strings.Contains(string(r.Body), webdavPassword) {
		t.Fatalf("tampered secret: %v", r)
	}
	// It can still be replaced or deleted.
	if st, _ := c.Put(t, "/api/secrets/webdav/nas", webdavBody); st != 204 {
		t.Fatal("replace a damaged secret")
	}
	if _, m := c.Get(t, "/api/secrets/webdav/nas"); m["password"] != webdavPassword {
		t.Fatalf("after replacing: %v", m)
	}
}

func TestSecretsUnavailableWithoutStore(t *testing.T) {
	t.Parallel()
	hub := apitest.Start(t, apitest.WithConfig(func(cfg *httpapi.Config) { cfg.Secrets = nil }))
	c := hub.Login(t)
	if st, m := c.Get(t, "/api/secrets/webdav"); st != 503 || m["error"] != "secrets_unavailable" {
		t.Fatalf("%d %v", st, m)
	}
}

// TestNothingSecretIsLoggedOrStoredInClear runs the whole flow with every log level on and checks
// that no secret used in it reaches a log line, and that none is in the database file or its WAL
// in clear.
func TestNothingSecretIsLoggedOrStoredInClear(t *testing.T) {
	t.Parallel()
	hub := startWithProbe(t)
	anon := hub.Client(t)
	const wrongPassword = "wrong-Pa55word-unique-3319"
	secretsUsed := []string{apitest.Password, wrongPassword, webdavPassword, smtpPassword, wecomKey, webhookSecret, webhookURLToken}

	hub.Setup(t)
	anon.Do(t, "POST", "/api/auth/login", map[string]string{"username": apitest.Username, "password": wrongPassword})
	anon.Do(t, "POST", "/api/auth/login", map[string]string{"username": "nobody", "password": wrongPassword})
	anon.Do(t, "POST", "/api/auth/login", `{"username":"admin","password":"`+wrongPassword) // malformed
	c := hub.Login(t)
	other := hub.Login(t)
	cookieA, cookieB := c.SessionCookie().Value, other.SessionCookie().Value
	secretsUsed = append(secretsUsed, c.CSRF, other.CSRF, cookieA, cookieB)

	c.Put(t, "/api/secrets/webdav/nas", webdavBody)
	c.Put(t, "/api/secrets/smtp/mail", smtpBody)
	c.Put(t, "/api/secrets/wecom-bot/ops", wecomBody)
	c.Put(t, "/api/secrets/webhook/ci", webhookBody)
	c.Put(t, "/api/secrets/webdav/bad", map[string]any{"username": "u:x", "password": webdavPassword})             // refused
	c.Put(t, "/api/secrets/webdav/bad", `{"username":"u","password":"`+webdavPassword+`","extra":1}`)              // refused
	c.Put(t, "/api/secrets/wecom-bot/bad", map[string]any{"webhook_url": "https://u:" + wecomKey + "@x.example/"}) // refused
	for _, p := range []string{"webdav/nas", "smtp/mail", "wecom-bot/ops", "webhook/ci"} {
		c.Get(t, "/api/secrets/"+p)
	}
	csrf := c.CSRF
	c.CSRF = other.CSRF // a CSRF token from another session
	c.Put(t, "/api/secrets/webdav/nas", webdavBody)
	c.Post(t, "/api/auth/logout", nil)
	c.CSRF = csrf
	c.Delete(t, "/api/secrets/webhook/ci")

	// What the database holds must not be in the logs either: the password hash, session ids.
	var hash string
	hub.DB.Reader().QueryRow(context.Background(), "SELECT password_hash FROM users").Scan(&hash)
	rows, err := hub.DB.Reader().Query(context.Background(), "SELECT id FROM sessions")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		secretsUsed = append(secretsUsed, id)
	}
	rows.Close()
	c.Post(t, "/api/auth/logout", nil)
	other.Post(t, "/api/auth/logout", nil)
	secretsUsed = append(secretsUsed, hash, strings.Split(hash, "$")[5])

	logs := hub.Logs.String()
	if len(hub.Logs.Find(t, "http request")) < 20 {
		t.Fatalf("the flow was not logged: %s", logs)
	}
	for _, s := range secretsUsed {
		if s == "" {
			t.Fatal("an empty secret in the list")
		}
		if strings.Contains(logs, s) {
			t.Errorf("a log line contains the secret %q", s)
		}
	}

	// The database file and its WAL (the Hub keeps running; nothing is checkpointed away).
	payloads := []string{apitest.Password, webdavPassword, smtpPassword, wecomKey, webhookSecret, webhookURLToken,
		"alice", cookieA, cookieB}
	var files []byte
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(hub.DB.Path() + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		files = append(files, b...)
	}
	if len(files) == 0 {
		t.Fatal("read no database bytes")
	}
	for _, s := range payloads {
		if strings.Contains(string(files), s) {
			t.Errorf("the database files hold %q in clear", s)
		}
	}
}
