package s3_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/s3"
	"github.com/bastion-backup/bastion/engine/targets/targettest"
	"github.com/bastion-backup/bastion/engine/testtool"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	c, err := s3.ParseConfig(json.RawMessage(`{"type":"s3","endpoint":" https://s3.eu-central-1.amazonaws.com/ ","region":"eu-central-1",
		"bucket":"my-backups","prefix":"/hosts/web1/","secret_name":"aws"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := s3.Config{Endpoint: "https://s3.eu-central-1.amazonaws.com", Region: "eu-central-1", Bucket: "my-backups",
		Prefix: "hosts/web1", SecretName: "aws", PartSizeBytes: s3.DefaultPartSizeBytes}
	if c != want {
		t.Fatalf("config = %+v, want %+v", c, want)
	}
	if c.Redacted() != want {
		t.Fatalf("redacted = %+v", c.Redacted())
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"type":"s3","endpoint":"https://s3.eu-central-1.amazonaws.com","region":"eu-central-1","bucket":"my-backups","prefix":"hosts/web1","secret_name":"aws","part_size_bytes":67108864}` {
		t.Fatalf("json = %s", got)
	}
	if again, err := s3.ParseConfig(b); err != nil || again != c {
		t.Fatalf("round trip = %+v, %v", again, err)
	}
}

func TestParseConfigRefuses(t *testing.T) {
	t.Parallel()
	base := map[string]any{"type": "s3", "endpoint": "http://127.0.0.1:9000", "bucket": "bkt", "secret_name": "s"}
	for _, tc := range []struct {
		field string
		value any
		want  string
	}{
		{"type", "webdav", "type"},
		{"endpoint", "", "endpoint: required"},
		{"endpoint", "ftp://host", "endpoint: must be an absolute http"},
		{"endpoint", "s3.amazonaws.com", "endpoint: must be an absolute http"},
		{"endpoint", "https://AKIA:topsecret@s3.amazonaws.com", "endpoint: must not carry"},
		{"endpoint", "https://s3.amazonaws.com/?X-Amz-Credential=x", "endpoint: must not have a query"},
		{"endpoint", "https://s3.amazonaws.com/bucket", "endpoint: must not have a path"},
		{"endpoint", "https://s3.amazonaws.com/#frag", "endpoint: must not have a query"},
		{"endpoint", "https://s3.amazonaws.com?", "endpoint: must not have a query"},
		{"endpoint", "https://s3.amazonaws.com:", "endpoint: empty port"},
		{"endpoint", "https://AKIA@s3.amazonaws.com", "endpoint: must not carry"},
		{"endpoint", "https://s3.amazonaws.com/" + strings.Repeat("x", 1<<20), "endpoint: must not have a path"},
		{"endpoint", "https://s3.amazon\x00aws.com", "endpoint: not a valid URL"},
		{"region", strings.Repeat("a", 65), "region: at most 64"},
		{"region", "us-\x01east-1", "region:"},
		{"region", "EU West", "region:"},
		{"bucket", "", "bucket: must be 3 to 63"},
		{"bucket", "ab", "bucket: must be 3 to 63"},
		{"bucket", strings.Repeat("a", 64), "bucket: must be 3 to 63"},
		{"bucket", "My_Bucket", "bucket:"},
		{"bucket", "-bucket", "bucket:"},
		{"bucket", "buck..et", "bucket:"},
		{"bucket", "192.168.1.1", "bucket:"},
		{"prefix", "a/../b", "prefix:"},
		{"prefix", "a//b", "prefix:"},
		{"prefix", "./a", "prefix:"},
		{"prefix", "a\nb", "prefix:"},
		{"prefix", "a\x7fb", "prefix:"},
		{"prefix", "a\u0085b", "prefix:"},
		{"prefix", "a\\b", "prefix:"},
		{"prefix", "a/..", "prefix:"},
		{"prefix", "../../etc", "prefix:"},
		{"prefix", strings.Repeat("p/", s3.MaxPrefixLen), "prefix:"},
		{"prefix", strings.Repeat("p", s3.MaxPrefixLen+1), "prefix:"},
		{"secret_name", "", "secret_name: required"},
		{"part_size_bytes", 1 << 20, "part_size_bytes"},
		{"part_size_bytes", int64(6) << 30, "part_size_bytes"},
		{"part_size_bytes", -1, "part_size_bytes"},
		{"unknown_field", 1, "unknown field"},
	} {
		t.Run(tc.field+"="+fmt.Sprint(tc.value), func(t *testing.T) {
			m := map[string]any{}
			for k, v := range base {
				m[k] = v
			}
			m[tc.field] = tc.value
			raw, _ := json.Marshal(m)
			_, err := s3.ParseConfig(raw)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Fatalf("error repeats the endpoint's password: %v", err)
			}
		})
	}
	minimal := `{"type":"s3","endpoint":"http://h","bucket":"bkt","secret_name":"s","path_style":true}`
	if _, err := s3.ParseConfig(json.RawMessage(minimal)); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	for _, trail := range []string{" {}", "}", "]", "x"} {
		if _, err := s3.ParseConfig(json.RawMessage(minimal + trail)); err == nil || !strings.Contains(err.Error(), "trailing data") {
			t.Fatalf("config followed by %q: error %v, want trailing data", trail, err)
		}
	}
}

func TestParseCredentials(t *testing.T) {
	t.Parallel()
	c, err := s3.ParseCredentials(json.RawMessage(`{"access_key_id":"AKIAEXAMPLE","secret_access_key":"wJalrXUtnFEMI/K7MDENG"}`))
	if err != nil || c.AccessKeyID != "AKIAEXAMPLE" || c.SecretAccessKey != "wJalrXUtnFEMI/K7MDENG" {
		t.Fatalf("credentials = %v, %v", c, err)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, "wJalr") {
			t.Fatalf("formatting shows the secret: %s", s)
		}
	}
	for _, raw := range []string{
		`{"access_key_id":"AK"}`,
		`{"secret_access_key":"wJalrSECRET"}`,
		`{"access_key_id":"AK","secret_access_key":"has space wJalrSECRET"}`,
		`{"access_key_id":"AK","secret_access_key":"wJalrSECRET","extra":1}`,
		`{"access_key_id":"AK","secret_access_key":"wJalrSECRET"`,
		`{"access_key_id":"AK","secret_access_key":42}`,
		`{"access_key_id":"AK","secret_access_key":"` + strings.Repeat("w", 257) + `"}`,
		`{"access_key_id":"` + strings.Repeat("A", 257) + `","secret_access_key":"wJalrSECRET"}`,
		`{"access_key_id":"AK","secret_access_key":"wJalr\u0000SECRET"}`,
		`{"access_key_id":"AK","secret_access_key":"wJalr\nSECRET"}`,
		`{"access_key_id":"AK","secret_access_key":"wJalr\u00e9SECRET"}`,
		`{"access_key_id":"AK","secret_access_key":"` + strings.Repeat("w", 1<<20) + `"}`,
		`[]`,
		`null`,
		`{"access_key_id":"AK","secret_access_key":"wJalrSECRET"} {"access_key_id":"other"}`,
		`{"access_key_id":"AK","secret_access_key":"wJalrSECRET"}x`,
		`{"access_key_id":"AK","secret_access_key":"wJalrSECRET"}}`,
	} {
		_, err := s3.ParseCredentials(json.RawMessage(raw))
		if err == nil {
			t.Fatalf("%s accepted", raw)
		}
		if strings.Contains(err.Error(), "wJalr") {
			t.Fatalf("error repeats the secret: %v", err)
		}
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	cfg := s3.Config{Endpoint: "https://s3.example.com", Bucket: "bkt", Prefix: "a b/c", SecretName: "s"}
	tg, err := s3.Open(context.Background(), cfg, s3.Credentials{AccessKeyID: "AKIDSHOWN", SecretAccessKey: "NEVERSHOWN"}, s3.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run := targets.RunRef{JobID: "job-1", RunID: "run_2"}
	if got := tg.Location(run); got != "s3://bkt/a%20b/c/job-1/run_2/" {
		t.Fatalf("location = %q", got)
	}
	red := tg.Redacted()
	if want := `{"type":"s3","endpoint":"https://s3.example.com","bucket":"bkt","prefix":"a b/c","secret_name":"s"}`; string(red.JSON()) != want || red.Type != "s3" || red.SecretName != "s" {
		t.Fatalf("redacted = %s, want %s", red.JSON(), want)
	}
	if tg.Type() != s3.Type {
		t.Fatalf("type = %q", tg.Type())
	}
	if _, err := s3.Open(context.Background(), cfg, s3.Credentials{AccessKeyID: "AK"}, s3.Options{}); targets.KindOf(err) != targets.KindConfig {
		t.Fatalf("open without a secret key: %v", err)
	}
}

// Against the real server: a wrong secret key is s3_auth, a missing bucket s3_config, and
// neither the secret key nor a signature shows in errors, logs, Location or Redacted.
func TestRealAuthAndBucketErrors(t *testing.T) {
	t.Parallel()
	srv := testtool.StartVersityGW(t)
	ctx := context.Background()
	run := targettest.NewRun(t)

	var logs testtool.LockedBuffer
	wrong := creds(srv)
	wrong.SecretAccessKey = "WRONG" + srv.SecretKey[5:]
	tg, s := newTarget(t, config(srv, srv.Endpoint, "p"), wrong, s3.Options{}, &logs)
	_, err := tg.Put(ctx, run, targets.ManifestName, targettest.NewContent(1, 10), 10)
	te := expectErr(t, err, targets.KindAuth, 403, 1)
	if !strings.Contains(te.Hint, "access key") {
		t.Fatalf("hint %q", te.Hint)
	}
	targettest.ExpectSleeps(t, s)
	if _, err := tg.Size(ctx, run, targets.CompleteName); targets.KindOf(err) != targets.KindAuth {
		t.Fatalf("HEAD with a wrong key: %v", err)
	}
	_, derr := tg.DeleteRun(ctx, run)
	if targets.KindOf(derr) != targets.KindAuth {
		t.Fatalf("delete with a wrong key: %v", derr)
	}

	cfg := config(srv, srv.Endpoint, "")
	cfg.Bucket = "no-such-bucket"
	tg2, _ := newTarget(t, cfg, creds(srv), s3.Options{}, &logs)
	_, err2 := tg2.Put(ctx, run, targets.ManifestName, targettest.NewContent(1, 10), 10)
	expectErr(t, err2, targets.KindConfig, 404, 1)

	for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), derr.Error(), err2.Error(), logs.String(),
		tg.Location(run), fmt.Sprint(tg.Redacted()), fmt.Sprintf("%+v", tg.Config().Redacted())} {
		for _, secret := range []string{srv.SecretKey, wrong.SecretAccessKey, "Signature=", "AWS4-HMAC"} {
			if strings.Contains(text, secret) {
				t.Fatalf("%q leaked into %q", secret, text)
			}
		}
	}
	if errors.Is(err, targets.ErrNotExist) {
		t.Fatal("an auth failure matches ErrNotExist")
	}
}
