package opener_test

import (
	"bytes"
	"context"
	"errors"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/localdir"
	"github.com/bastion-backup/bastion/engine/targets/opener"
)

// agentTargets stands in for the agents package: it opens an agent's directory here.
type agentTargets struct{ opened []targets.RunTarget }

func (a *agentTargets) Open(_ context.Context, rt targets.RunTarget) (targets.Target, error) {
	a.opened = append(a.opened, rt)
	dir, _ := all.Registry.LocalPathOf(rt.Target)
	return localdir.New(dir)
}

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := t.TempDir()
	run := targets.RunRef{JobID: "job-1", RunID: "run-1"}

	t.Run("LocalDirFromSpec", func(t *testing.T) {
		t.Parallel()
		rt := opener.FromSpec("hub", jobspec.Target{Type: "local_dir", Config: &localdir.Config{TargetType: "local_dir", BaseDir: base}, PartSizeBytes: 1 << 20})
		if rt.NodeID != "hub" || string(rt.Target.JSON()) != string(localdir.Redact(base).JSON()) {
			t.Fatalf("FromSpec = %+v", rt)
		}
		o := opener.New(opener.Config{Logger: zerolog.Nop()})
		tg, err := o.Open(ctx, rt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tg.Put(ctx, run, "payload.part000001", bytes.NewReader([]byte("data")), 4); err != nil {
			t.Fatal(err)
		}
		if string(tg.Redacted().JSON()) != string(rt.Target.JSON()) {
			t.Fatalf("Redacted = %+v, want %+v", tg.Redacted(), rt.Target)
		}
	})

	t.Run("WebDAVSpecKeepsNoCredential", func(t *testing.T) {
		t.Parallel()
		rt := opener.FromSpec("hub", jobspec.Target{Type: "webdav", Config: &webdav.Config{TargetType: "webdav", BaseURL: "https://dav.example/bk/", Secret: "nas"}})
		if string(rt.Target.JSON()) != `{"type":"webdav","base_url":"https://dav.example/bk/","secret_name":"nas"}` {
			t.Fatalf("FromSpec = %+v", rt)
		}
	})

	t.Run("ParseStoredSnapshot", func(t *testing.T) {
		t.Parallel()
		rt, err := opener.Parse(`{"target":{"type":"local_dir","base_dir":"/bk"}}`)
		if err != nil || rt.NodeID != "hub" || string(rt.Target.JSON()) != `{"type":"local_dir","base_dir":"/bk"}` {
			t.Fatalf("Parse = %+v, %v", rt, err)
		}
		if _, err := opener.Parse(`not json`); targets.KindOf(err) != targets.KindConfig {
			t.Fatalf("Parse(garbage) = %v", err)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		t.Parallel()
		o := opener.New(opener.Config{Logger: zerolog.Nop()})
		for _, tc := range []struct {
			name, kind, code string
			rt               targets.RunTarget
		}{
			{"AgentWithoutRemote", targets.KindNetwork, "agent_unreachable", targets.RunTarget{NodeID: "agent-7", Target: localdir.Redact(base)}},
			{"RelativeBaseDir", targets.KindConfig, "local_dir_config", targets.RunTarget{NodeID: "hub", Target: localdir.Redact("bk")}},
			{"UnknownType", targets.KindConfig, "unsupported_target", targets.RunTarget{NodeID: "hub", Target: targets.Redacted{Type: "ftp"}}},
			{"WebDAVWithoutSecretName", targets.KindConfig, "webdav_secret_missing", targets.RunTarget{NodeID: "hub", Target: webdav.Redact("https://dav.example/", "")}},
			{"WebDAVWithoutStore", targets.KindConfig, "webdav_secret_missing", targets.RunTarget{NodeID: "hub", Target: webdav.Redact("https://dav.example/", "nas")}},
		} {
			_, err := o.Open(ctx, tc.rt)
			var te *targets.Error
			if !errors.As(err, &te) || te.Kind != tc.kind || te.Code != tc.code {
				t.Errorf("%s: %v, want kind %s code %s", tc.name, err, tc.kind, tc.code)
			}
		}
	})

	t.Run("AgentThroughRemote", func(t *testing.T) {
		t.Parallel()
		remote := &agentTargets{}
		o := opener.New(opener.Config{Remote: remote, Logger: zerolog.Nop()})
		rt := targets.RunTarget{NodeID: "agent-7", Target: localdir.Redact(base)}
		if _, err := o.Open(ctx, rt); err != nil {
			t.Fatal(err)
		}
		if len(remote.opened) != 1 || string(remote.opened[0].Target.JSON()) != string(rt.Target.JSON()) {
			t.Fatalf("remote opened %+v", remote.opened)
		}
	})
}
