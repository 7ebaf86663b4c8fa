package httpapi

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets"
	"github.com/bastion-backup/bastion/engine/targets/all"
)

// Target credentials: every secret kind a target driver reads (engine/targets/all) is served at
// /api/secrets/{kind} and /api/nodes/{node_id}/secrets/{kind}, bound to the origins it may be
// sent to, and pushed to agents.

// isTargetSecretKind reports whether kind is the secret kind of a target driver.
func isTargetSecretKind(kind string) bool {
	return slices.Contains(all.Registry.SecretKinds(), kind)
}

// canonicalPayload validates a secret payload and re-encodes it: a notification channel's
// destination with its driver, else with engine/secrets when it knows the kind, else with the
// target driver that reads that kind.
func canonicalPayload(kind string, body []byte) ([]byte, error) {
	if d, ok := notify.Channels().ByKind(kind); ok {
		dest, err := d.DecodeDestination(body)
		if err != nil {
			return nil, err
		}
		return json.Marshal(dest)
	}
	payload, err := secrets.DecodePayload(kind, body)
	var ve *secrets.ValidationError
	if err != nil && errors.As(err, &ve) && ve.Code == "invalid_kind" {
		for _, d := range all.Drivers {
			if sc, ok := d.(targets.SecretChecker); ok && d.SecretKind() == kind {
				out, err := sc.CheckSecret(body)
				var fe *targets.FieldError
				if errors.As(err, &fe) {
					// The original names the field in the code (invalid_username); a
					// problem with the whole payload stays invalid_payload.
					code := "invalid_payload"
					if fe.Field != "" {
						code = "invalid_" + fe.Field
					}
					return nil, &secrets.ValidationError{Code: code, Field: fe.Field, Reason: fe.Reason, Message: fe.Error()}
				}
				return out, err
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(payload)
}
