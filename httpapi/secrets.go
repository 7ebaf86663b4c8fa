package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/engine/targets/all"
	"github.com/bastion-backup/bastion/httpapi/respond"
)

// secretKinds maps the path segment of /api/secrets/{kind} to the stored kind: the secret kind
// of each target driver (engine/targets/all), then of each notification channel, with "_" spelt
// "-" (wecom-bot). Age identities are created by the backup pipeline, never through this API.
var secretKinds, secretKindSegments = func() (map[string]string, []string) {
	m, segs := map[string]string{}, []string{}
	add := func(kind string) {
		seg := strings.ReplaceAll(kind, "_", "-")
		if _, dup := m[seg]; !dup {
			m[seg] = kind
			segs = append(segs, seg)
		}
	}
	for _, k := range all.Registry.SecretKinds() {
		add(k)
	}
	for _, d := range notify.Channels() {
		add(d.SecretKind())
	}
	return m, segs
}()

// secretRoutes serve the Hub's own credentials (node "hub"). GET of one secret returns its
// decrypted payload on purpose: the admin's edit form needs it. Listing never does.
func (s *Server) secretRoutes(r chi.Router) {
	r.Route("/secrets/{kind}", func(r chi.Router) {
		r.Get("/", s.listSecrets)
		r.Get("/{name}", s.getSecret)
		r.Put("/{name}", s.putSecret)
		r.Delete("/{name}", s.deleteSecret)
	})
}

// secretTarget resolves the kind and name of a /api/secrets request, answering the client
// itself when either is unusable.
func (s *Server) secretTarget(w http.ResponseWriter, r *http.Request, withName bool) (kind, name string, ok bool) {
	if s.cfg.Secrets == nil {
		respond.Error(w, r, respond.New(http.StatusServiceUnavailable, "secrets_unavailable", "the secret store is not configured"))
		return "", "", false
	}
	seg := pathParam(r, "kind")
	kind, known := secretKinds[seg]
	if !known {
		respond.Error(w, r, respond.NotFound("unknown_secret_kind", "unknown secret kind: use "+orList(secretKindSegments)).
			Field("kind").Param("kinds", secretKindSegments))
		return "", "", false
	}
	if !withName {
		return kind, "", true
	}
	name = pathParam(r, "name")
	if err := secrets.ValidateName(name); err != nil {
		respond.Error(w, r, validationError(err))
		return "", "", false
	}
	return kind, name, true
}

// pathParam returns a URL parameter decoded. chi matches on the raw path when the request
// escaped something (say %2F), and then hands the parameter over still escaped.
func pathParam(r *http.Request, key string) string {
	v := chi.URLParam(r, key)
	if r.URL.RawPath == "" {
		return v
	}
	if dec, err := url.PathUnescape(v); err == nil {
		return dec
	}
	return v
}

func validationError(err error) error {
	var ve *secrets.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	e := respond.BadRequest(ve.Code, ve.Message)
	if ve.Reason != "" {
		e.Reason(ve.Reason)
	}
	if ve.Field != "" {
		e.Field(ve.Field)
	}
	return e
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) {
	if kind, _, ok := s.secretTarget(w, r, false); ok {
		s.answerSecretList(w, r, secrets.HubNode, kind)
	}
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) {
	if kind, name, ok := s.secretTarget(w, r, true); ok {
		s.answerSecret(w, r, secrets.HubNode, kind, name)
	}
}

func (s *Server) putSecret(w http.ResponseWriter, r *http.Request) {
	kind, name, ok := s.secretTarget(w, r, true)
	if ok && s.storeSecret(w, r, secrets.HubNode, kind, name) {
		respond.NoContent(w)
	}
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) {
	kind, name, ok := s.secretTarget(w, r, true)
	if !ok || !s.removeSecret(w, r, secrets.HubNode, kind, name) {
		return
	}
	if s.cfg.OnSecretDeleted != nil {
		if err := s.cfg.OnSecretDeleted(r.Context(), kind, name); err != nil {
			zerolog.Ctx(r.Context()).Error().Err(err).Str("secret_kind", kind).Str("secret_name", name).Msg("after deleting a secret")
		}
	}
	respond.NoContent(w)
}

// The four operations below serve both /api/secrets (node hub) and /api/nodes/{id}/secrets. Each
// answers the client itself when it fails; store and remove leave the success answer to the
// caller, which may have more to do first.

func (s *Server) answerSecretList(w http.ResponseWriter, r *http.Request, node, kind string) {
	list, err := s.cfg.Secrets.List(r.Context(), node, kind)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if !isTargetSecretKind(kind) {
		respond.JSON(w, http.StatusOK, list)
		return
	}
	// Target credentials list the servers they may be sent to, so an unbound one shows.
	type item struct {
		secrets.Meta
		AllowedOrigins []string `json:"allowed_origins"`
	}
	out := make([]item, len(list))
	for i, m := range list {
		origins, err := s.cfg.Secrets.AllowedOrigins(r.Context(), node, kind, m.Name)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		out[i] = item{Meta: m, AllowedOrigins: origins}
	}
	respond.JSON(w, http.StatusOK, out)
}

func (s *Server) answerSecret(w http.ResponseWriter, r *http.Request, node, kind, name string) {
	raw, err := s.cfg.Secrets.Get(r.Context(), node, kind, name)
	if err != nil {
		respond.Error(w, r, secretError(err))
		return
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		respond.Error(w, r, respond.New(http.StatusInternalServerError, "secret_undecryptable",
			"the stored payload of "+kind+"/"+name+" is not a JSON object"))
		return
	}
	doc["name"], _ = json.Marshal(name)
	if isTargetSecretKind(kind) {
		origins, err := s.cfg.Secrets.AllowedOrigins(r.Context(), node, kind, name)
		if err != nil {
			respond.Error(w, r, err)
			return
		}
		doc["allowed_origins"], _ = json.Marshal(origins)
	}
	w.Header().Set("Cache-Control", "no-store")
	respond.JSON(w, http.StatusOK, doc)
}

func (s *Server) storeSecret(w http.ResponseWriter, r *http.Request, node, kind, name string) bool {
	if err := respond.CheckJSONContentType(r); err != nil {
		respond.Error(w, r, err)
		return false
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		respond.Error(w, r, err) // over the body limit: 413
		return false
	}
	var origins secrets.OriginUpdate
	if isTargetSecretKind(kind) {
		if body, origins, err = splitOrigins(body); err != nil {
			respond.Error(w, r, validationError(err))
			return false
		}
	}
	if err := s.saveSecret(r.Context(), node, kind, name, body, origins); err != nil {
		respond.Error(w, r, err)
		return false
	}
	return true
}

// saveSecret validates and stores a secret's payload in a node's scope: the write of
// PUT …/secrets/{kind}/{name}, and of each agent a webdav_secret_distribute bulk operation
// copies the Hub's credential to. A bad payload is a 400.
func (s *Server) saveSecret(ctx context.Context, node, kind, name string, body []byte, origins secrets.OriginUpdate) error {
	// Store the validated, re-encoded payload, not the client's bytes: no stray whitespace or
	// duplicate keys end up encrypted.
	canonical, err := canonicalPayload(kind, body)
	if err != nil {
		return validationError(err)
	}
	if err := s.cfg.Secrets.PutWithOrigins(ctx, node, kind, name, canonical, origins); err != nil {
		return err
	}
	zerolog.Ctx(ctx).Info().Str("node_id", node).Str("secret_kind", kind).Str("secret_name", name).
		Strs("allowed_origins_set", origins.Origins).Bool("allowed_origins_replaced", origins.Replace).Msg("secret saved")
	return nil
}

// splitOrigins takes the origin fields out of a target secret's body (WebDAV's), leaving the payload:
// allowed_origins (a list of URLs or origins) replaces the servers the credential may be sent to,
// [] unbinding it; base_url (the server the credential is for, as the secret form sends it) adds
// one. A body with neither keeps the origins the secret has, so an older client re-saving a
// password does not unbind it.
func splitOrigins(body []byte) ([]byte, secrets.OriginUpdate, error) {
	var up secrets.OriginUpdate
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return body, up, nil // DecodePayload explains what is wrong with it
	}
	raw, hasList := doc["allowed_origins"]
	rawURL, hasURL := doc["base_url"]
	if !hasList && !hasURL {
		return body, up, nil
	}
	delete(doc, "allowed_origins")
	delete(doc, "base_url")
	var list []string
	if hasList {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, up, &secrets.ValidationError{Code: "invalid_origin", Field: "allowed_origins", Reason: "invalid_format",
				Message: "allowed_origins must be a list of URLs or origins (scheme://host[:port])"}
		}
		up.Replace = true
	}
	if hasURL {
		var u string
		if err := json.Unmarshal(rawURL, &u); err != nil {
			return nil, up, &secrets.ValidationError{Code: "invalid_origin", Field: "base_url", Reason: "invalid_format",
				Message: "base_url must be a string"}
		}
		if strings.TrimSpace(u) != "" {
			if _, err := secrets.NormalizeOrigin(u); err != nil {
				return nil, up, &secrets.ValidationError{Code: "invalid_origin", Field: "base_url", Reason: "invalid_format",
					Message: "base_url must be an absolute http or https URL"}
			}
			list = append(list, u)
		}
	}
	norm, err := secrets.NormalizeOrigins("allowed_origins", list)
	if err != nil {
		return nil, up, err
	}
	up.Origins = norm
	rest, err := json.Marshal(doc)
	return rest, up, err
}

func (s *Server) removeSecret(w http.ResponseWriter, r *http.Request, node, kind, name string) bool {
	if err := s.cfg.Secrets.Delete(r.Context(), node, kind, name); err != nil {
		respond.Error(w, r, secretError(err))
		return false
	}
	zerolog.Ctx(r.Context()).Info().Str("node_id", node).Str("secret_kind", kind).Str("secret_name", name).Msg("secret deleted")
	return true
}

func secretError(err error) error {
	var de *secrets.DecryptError
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		return respond.NotFound("secret_not_found", "secret not found").Cause(err)
	case errors.As(err, &de):
		// The message names the secret and the reason, never key or payload bytes.
		return respond.New(http.StatusInternalServerError, "secret_undecryptable", de.Error()).Cause(err)
	}
	return err
}

// orList joins items as "a, b, c or d".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}
