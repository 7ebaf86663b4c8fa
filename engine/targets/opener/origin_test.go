package opener_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/bastion-backup/bastion/engine/targets/webdav"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/opener"
	"github.com/bastion-backup/bastion/storage/storagetest"
)

// A run target whose base_url was changed behind the API's back (an edited database) is not
// opened with a credential bound to another server, nor with an unbound one: nothing reaches the
// other server.
func TestOpenRefusesCredentialOutsideItsOrigins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var hits atomic.Int64
	rogue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusMultiStatus)
	}))
	t.Cleanup(rogue.Close)

	db := storagetest.Open(t)
	keys, err := secrets.NewKeyring(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	store := secrets.NewStore(db, keys, clock.Real{})
	cred, _ := json.Marshal(secrets.WebDAV{Username: "u", Password: "p"})
	if err := store.PutWithOrigins(ctx, "hub", secrets.KindWebDAV, "bound", cred,
		secrets.OriginUpdate{Origins: []string{"https://dav.example.com:443"}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, "hub", secrets.KindWebDAV, "unbound", cred); err != nil {
		t.Fatal(err)
	}
	o := opener.New(opener.Config{Secrets: store, Logger: zerolog.Nop()})
	for _, tc := range []struct{ secret, code string }{
		{"bound", secrets.CodeOriginMismatch},
		{"unbound", secrets.CodeOriginUnbound},
	} {
		rt := targets.RunTarget{NodeID: "hub", Target: webdav.Redact(rogue.URL+"/dav/", tc.secret)}
		tgt, err := o.Open(ctx, rt)
		var te *targets.Error
		if !errors.As(err, &te) || te.Code != tc.code || te.Kind != targets.KindConfig {
			t.Fatalf("%s: open = %v, %v; want a %s config error", tc.secret, tgt, err, tc.code)
		}
	}
	// The bound server itself still opens (no request is made by Open).
	ok := targets.RunTarget{NodeID: "hub", Target: webdav.Redact("https://DAV.example.com/remote.php/", "bound")}
	if _, err := o.Open(ctx, ok); err != nil {
		t.Fatalf("open on the bound origin: %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the other server", n)
	}
}
