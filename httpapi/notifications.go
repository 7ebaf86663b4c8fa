package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/notify"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/httpapi/respond"
)

// notificationRoutes serves /api/notifications: settings and templates, destinations (enable
// flags, test send) and the queue (list, retry now, cancel).
func (s *Server) notificationRoutes(r chi.Router) {
	if s.cfg.Notifications == nil {
		return
	}
	r.Route("/notifications", func(r chi.Router) {
		r.Get("/settings", s.getNotificationSettings)
		r.Put("/settings", s.putNotificationSettings)
		r.Post("/templates/validate", s.validateNotificationTemplates)
		r.Get("/destinations", s.listNotificationDestinations)
		r.Post("/destinations/{channel}/{name}/enabled", s.setNotificationDestinationEnabled)
		r.Post("/destinations/{channel}/{name}/test", s.testNotificationDestination)
		r.Get("/queue", s.listNotificationQueue)
		r.Post("/queue/{id}/retry-now", s.retryNotificationNow)
		r.Post("/queue/{id}/cancel", s.cancelNotification)
	})
}

// notifyError turns a refusal of package notify into the API's envelope; other errors pass
// through to respond.Error's classification.
func notifyError(err error) error {
	var e *notify.Error
	if !errors.As(err, &e) {
		return err
	}
	var out *respond.APIError
	switch e.Kind {
	case notify.KindInvalid:
		out = respond.BadRequest(e.Code, e.Message)
	case notify.KindNotFound:
		out = respond.NotFound(e.Code, e.Message)
	case notify.KindConflict:
		out = respond.Conflict(e.Code, e.Message)
	case notify.KindUpstream:
		// The receiver's own words: the point of a test send is to show what is wrong.
		out = respond.New(http.StatusBadGateway, e.Code, e.Message).Reason(string(e.SendKind))
	default:
		return err
	}
	if e.Field != "" {
		out.Field(e.Field)
	}
	if e.Reason != "" {
		out.Reason(e.Reason)
	}
	return out
}

func (s *Server) getNotificationSettings(w http.ResponseWriter, r *http.Request) {
	set, err := s.cfg.Notifications.Settings(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, set)
}

// putNotificationSettings stores the settings. Fields the body leaves out keep their current
// values (a client that predates the webhook channel does not switch it off). Unknown
// placeholders are kept and can be listed with /templates/validate; a blank template is refused.
func (s *Server) putNotificationSettings(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	set, err := s.cfg.Notifications.Settings(ctx)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if err := respond.DecodeJSON(r, &set); err != nil {
		respond.Error(w, r, err)
		return
	}
	res, err := s.cfg.Notifications.UpdateSettings(ctx, set)
	if err != nil {
		respond.Error(w, r, notifyError(err))
		return
	}
	switches := zerolog.Dict()
	for _, ch := range notify.AllChannels {
		switches.Bool(ch, set.ChannelEnabled(ch))
	}
	zerolog.Ctx(ctx).Info().Bool("enabled", set.Enabled).Dict("channels_enabled", switches).
		Int64("canceled", res.Canceled).Int("unknown_placeholders", len(res.UnknownPlaceholders)).
		Msg("notification settings updated")
	respond.NoContent(w)
}

type templateValidation struct {
	UnknownPlaceholders []notify.UnknownPlaceholder `json:"unknown_placeholders"`
	Placeholders        []string                    `json:"placeholders"`
}

// validateNotificationTemplates checks templates, sent as the templates object itself (what the
// web UI sends) or wrapped as {"templates": {...}}; templates left out are the defaults. A blank
// one is 400 invalid_template; otherwise 200 with the {{...}} that are not placeholders (kept
// literally when rendering) and the list of placeholders. Nothing is saved.
func (s *Server) validateNotificationTemplates(w http.ResponseWriter, r *http.Request) {
	req := templatesRequest{set: notify.DefaultSettings()}
	if err := respond.DecodeJSON(r, &req); err != nil {
		respond.Error(w, r, err)
		return
	}
	if err := notify.ValidateSettings(req.set); err != nil {
		respond.Error(w, r, notifyError(err))
		return
	}
	out := templateValidation{UnknownPlaceholders: notify.UnknownPlaceholders(req.set.Templates), Placeholders: notify.Placeholders}
	if out.UnknownPlaceholders == nil {
		out.UnknownPlaceholders = []notify.UnknownPlaceholder{}
	}
	respond.JSON(w, http.StatusOK, out)
}

// templatesRequest reads a templates object over set's templates; its "templates" member, if
// any, is read first and the object's own template keys override it. notify.Templates knows the
// channels' template keys and refuses others.
type templatesRequest struct{ set notify.Settings }

func (t *templatesRequest) UnmarshalJSON(data []byte) error {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	if wrapped, ok := doc["templates"]; ok {
		if err := json.Unmarshal(wrapped, &t.set.Templates); err != nil {
			return err
		}
		delete(doc, "templates")
	}
	rest, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return json.Unmarshal(rest, &t.set.Templates)
}

func (s *Server) listNotificationDestinations(w http.ResponseWriter, r *http.Request) {
	ds, err := s.cfg.Notifications.Destinations(r.Context())
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	respond.JSON(w, http.StatusOK, ds)
}

// destinationParams reads {channel} (wecom-bot accepted for wecom_bot, as in the secrets paths)
// and {name}, a secret name decoded once and checked as /api/secrets checks it.
func destinationParams(r *http.Request) (channel, name string, err error) {
	channel = strings.ReplaceAll(chi.URLParam(r, "channel"), "-", "_")
	if !notify.ValidChannel(channel) {
		return "", "", respond.BadRequest("invalid_channel", "Unsupported notification channel").
			Reason("unsupported").Field("channel")
	}
	name = pathParam(r, "name")
	if err := secrets.ValidateName(name); err != nil {
		return "", "", validationError(err)
	}
	return channel, name, nil
}

func (s *Server) setNotificationDestinationEnabled(w http.ResponseWriter, r *http.Request) {
	channel, name, err := destinationParams(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	var req struct {
		Enabled *bool `json:"enabled"`
	}
	if err := respond.DecodeJSON(r, &req); err != nil {
		respond.Error(w, r, err)
		return
	}
	if req.Enabled == nil {
		respond.Error(w, r, respond.BadRequest("invalid_json", "enabled is required").Reason("required").Field("enabled"))
		return
	}
	canceled, err := s.cfg.Notifications.SetDestinationEnabled(r.Context(), channel, name, *req.Enabled)
	if err != nil {
		respond.Error(w, r, notifyError(err))
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("channel", channel).Str("destination", name).Bool("enabled", *req.Enabled).
		Int64("canceled", canceled).Msg("notification destination updated")
	respond.NoContent(w)
}

// testNotificationDestination sends a fixed test message now, whatever the switches say, and
// answers 204, or 502 notification_test_failed with the receiver's message (details.reason is
// the error kind: auth, rate_limited, network, unknown).
func (s *Server) testNotificationDestination(w http.ResponseWriter, r *http.Request) {
	channel, name, err := destinationParams(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if err := s.cfg.Notifications.TestDestination(r.Context(), channel, name); err != nil {
		respond.Error(w, r, notifyError(err))
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("channel", channel).Str("destination", name).Msg("test notification sent")
	respond.NoContent(w)
}

// listNotificationQueue answers a page of the queue, newest first. Filters status and channel
// repeat (status=failed&status=canceled; status[] is accepted too). Paging is page/page_size, or
// cursor (the next_cursor of the previous page), which wins when both are given.
func (s *Server) listNotificationQueue(w http.ResponseWriter, r *http.Request) {
	var q notify.QueueQuery
	pg, err := readPage(r)
	if err != nil {
		respond.Error(w, r, err)
		return
	}
	if pg.paged {
		q.Page, q.PageSize = pg.page, pg.size
	}
	for key, values := range r.URL.Query() {
		switch key {
		case "status", "status[]":
			q.Statuses = append(q.Statuses, trimmed(values)...)
		case "channel", "channel[]":
			q.Channels = append(q.Channels, trimmed(values)...)
		case "cursor":
			q.Cursor = values[len(values)-1]
		}
	}
	page, err := s.cfg.Notifications.Queue(r.Context(), q)
	if err != nil {
		respond.Error(w, r, notifyError(err))
		return
	}
	respond.JSON(w, http.StatusOK, page)
}

func trimmed(values []string) []string {
	var out []string
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if p := strings.TrimSpace(part); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func (s *Server) retryNotificationNow(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := s.cfg.Notifications.RetryNow(r.Context(), id); err != nil {
		respond.Error(w, r, notifyError(err))
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("notification_id", id).Msg("notification retry-now scheduled")
	respond.NoContent(w)
}

func (s *Server) cancelNotification(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := s.cfg.Notifications.Cancel(r.Context(), id); err != nil {
		respond.Error(w, r, notifyError(err))
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("notification_id", id).Msg("notification canceled")
	respond.NoContent(w)
}
