package s3_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"github.com/bastion-backup/bastion/engine/targets/s3"
)

// The driver is listed, parses a job's target object, and its stored description opens again
// unchanged, without part_size_bytes (which a job spec writes beside it as the split size).
func TestDriverRoundTrip(t *testing.T) {
	t.Parallel()
	d, ok := all.Registry.Lookup("s3")
	if !ok || d.SecretKind() != "s3" {
		t.Fatalf("s3 is not listed in engine/targets/all (or has secret kind %q)", d.SecretKind())
	}
	raw := json.RawMessage(`{"type":"s3","endpoint":"https://s3.eu-central-1.amazonaws.com/","region":"eu-central-1","bucket":"backups","prefix":"/hub/","secret_name":"aws","path_style":true}`)
	cfg, err := d.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.SecretName() != "aws" || cfg.Endpoint() != "https://s3.eu-central-1.amazonaws.com" {
		t.Fatalf("secret %q endpoint %q", cfg.SecretName(), cfg.Endpoint())
	}
	want := `{"type":"s3","endpoint":"https://s3.eu-central-1.amazonaws.com","region":"eu-central-1","bucket":"backups","prefix":"hub","secret_name":"aws","path_style":true}`
	if got := string(cfg.Redact().JSON()); got != want {
		t.Fatalf("redacted %s\nwant      %s", got, want)
	}
	again, err := d.Parse(cfg.Redact().JSON())
	if err != nil || string(again.Redact().JSON()) != want {
		t.Fatalf("stored description does not parse back: %v", err)
	}
	tg, err := cfg.Open(context.Background(), []byte(`{"access_key_id":"AK","secret_access_key":"SK"}`), targets.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Type() != "s3" || string(tg.Redacted().JSON()) != want {
		t.Fatalf("opened target describes itself as %s", tg.Redacted().JSON())
	}
}

// Bad target objects and secrets are refused with the field named and no value repeated.
func TestDriverRefusals(t *testing.T) {
	t.Parallel()
	d, _ := all.Registry.Lookup("s3")
	var fe *targets.FieldError
	if _, err := d.Parse(json.RawMessage(`{"type":"s3","endpoint":"https://x","bucket":"bkt","secret_name":"s","password":"hunter2"}`)); !errors.As(err, &fe) || fe.Field != "password" || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("unknown field: %v", err)
	}
	cfg, err := d.Parse(json.RawMessage(`{"type":"s3","endpoint":"https://x","bucket":"No_Such","secret_name":"s"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); !errors.As(err, &fe) || fe.Field != "bucket" {
		t.Fatalf("bad bucket: %v", err)
	}
	cfg, _ = d.Parse(json.RawMessage(`{"type":"s3","endpoint":"https://x","bucket":"bkt"}`))
	if err := cfg.Validate(); !errors.As(err, &fe) || fe.Field != "secret_name" || fe.Reason != "required" {
		t.Fatalf("no secret: %#v", err)
	}
	if _, err := cfg.Open(context.Background(), []byte(`{"access_key_id":"AK"}`), targets.Deps{}); targets.KindOf(err) != targets.KindConfig {
		t.Fatalf("open with half a credential: %v", err)
	}
	sc := d.(targets.SecretChecker)
	if _, err := sc.CheckSecret(json.RawMessage(`{"access_key_id":"AK","secret_access_key":""}`)); !errors.As(err, &fe) || fe.Field != "secret_access_key" {
		t.Fatalf("empty secret key: %v", err)
	}
	out, err := sc.CheckSecret(json.RawMessage(` {"secret_access_key":"SK",  "access_key_id":"AK"} `))
	if err != nil || string(out) != `{"access_key_id":"AK","secret_access_key":"SK"}` {
		t.Fatalf("canonical secret %s %v", out, err)
	}
	if _, err := s3.ParseCredentials(json.RawMessage(`{"access_key_id":"AK","secret_access_key":"SK","token":"x"}`)); err == nil {
		t.Fatal("an unknown credential field was accepted")
	}
}
