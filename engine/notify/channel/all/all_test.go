package all_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/channel/all"
	"github.com/bastion-backup/bastion/engine/secrets"
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// TestDriverConformance holds every channel of the list to what the rest of the Hub assumes of
// a driver. A new channel passes it before anything else.
func TestDriverConformance(t *testing.T) {
	t.Parallel()
	names, kinds, keys := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, d := range all.Drivers() {
		t.Run(d.Name(), func(t *testing.T) {
			if !nameRE.MatchString(d.Name()) || names[d.Name()] {
				t.Errorf("name %q must be unique and [a-z][a-z0-9_]* (queue keys are channel/secret)", d.Name())
			}
			names[d.Name()] = true
			k := d.SecretKind()
			if !nameRE.MatchString(k) || kinds[k] || k == secrets.KindWebDAV || k == secrets.KindBackupAgeIdentity {
				t.Errorf("secret kind %q must be unique, [a-z][a-z0-9_]* and not another kind's", k)
			}
			kinds[k] = true
			if d.Protocol() == "" {
				t.Error("protocol is empty")
			}
			for _, tpl := range d.Templates() {
				if !nameRE.MatchString(tpl.Key) || keys[tpl.Key] || tpl.Key == "verify_failed" {
					t.Errorf("template key %q must be unique across channels and not verify_failed", tpl.Key)
				}
				keys[tpl.Key] = true
				for what, v := range map[string]string{"Label": tpl.Label, "DrillLabel": tpl.DrillLabel, "Run": tpl.Run,
					"VerifyFailed": tpl.VerifyFailed, "Test": tpl.Test} {
					if strings.TrimSpace(v) == "" {
						t.Errorf("template %s: %s is blank", tpl.Key, what)
					}
				}
				if tpl.Lines < 1 {
					t.Errorf("template %s: Lines %d", tpl.Key, tpl.Lines)
				}
			}
			for _, raw := range []string{``, `[`, `{}`, `{"unknown_field_x":"s3cr3t-value"}`, `{} {}`, `null`} {
				_, err := d.DecodeDestination([]byte(raw))
				if err == nil {
					t.Errorf("destination %q accepted", raw)
					continue
				}
				if strings.Contains(err.Error(), "s3cr3t-value") {
					t.Errorf("destination error echoes the payload: %v", err)
				}
			}
			if err := d.Send(context.Background(), channel.Message{Destination: struct{}{}}); err == nil {
				t.Error("Send accepted a destination of another type")
			}
		})
	}
	if l := all.Drivers(); len(l) == 0 {
		t.Fatal("no channels")
	} else if _, ok := l.Get(l[0].Name()); !ok {
		t.Fatal("List.Get misses a listed channel")
	}
}
