package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/send"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage"
)

// Settings returns the notification settings, storing the defaults on first read.
func (s *Service) Settings(ctx context.Context) (Settings, error) {
	raw, err := s.db.Reader().GetSetting(ctx, storage.SettingNotifications)
	if err == nil {
		return DecodeSettings(DefaultSettings(), []byte(raw))
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return Settings{}, err
	}
	var out Settings
	err = s.db.Write(ctx, func(q storage.Q) error {
		// Another writer may have stored settings since the read above.
		if out, err = loadSettings(ctx, q); err != nil {
			return err
		}
		if _, err := q.GetSetting(ctx, storage.SettingNotifications); err == nil {
			return nil
		}
		return q.PutSetting(ctx, storage.SettingNotifications, encodeSettings(out), s.clock.Now().Unix())
	})
	return out, err
}

// SettingsUpdate reports what UpdateSettings did.
type SettingsUpdate struct {
	Canceled int64 // queued rows canceled because a switch went off
	// UnknownPlaceholders of the saved templates (kept literally; saving is not refused).
	UnknownPlaceholders []UnknownPlaceholder
}

// UpdateSettings validates and stores next. Turning notifications off cancels every queued row;
// turning a channel off cancels that channel's queued rows (rows being sent meet the send-time
// re-check). Turning something back on revives nothing: use RetryNow.
func (s *Service) UpdateSettings(ctx context.Context, next Settings) (SettingsUpdate, error) {
	if err := ValidateSettings(next); err != nil {
		return SettingsUpdate{}, err
	}
	res := SettingsUpdate{UnknownPlaceholders: UnknownPlaceholders(next.Templates)}
	now := s.clock.Now().Unix()
	err := s.db.Write(ctx, func(q storage.Q) error {
		res.Canceled = 0
		if err := q.PutSetting(ctx, storage.SettingNotifications, encodeSettings(next), now); err != nil {
			return err
		}
		if !next.Enabled {
			n, err := q.CancelQueuedNotifications(ctx, "", "", ReasonNotificationsDisabled, now)
			res.Canceled = n
			return err
		}
		for _, ch := range AllChannels {
			if !next.ChannelEnabled(ch) {
				n, err := q.CancelQueuedNotifications(ctx, ch, "", ReasonChannelDisabled, now)
				if err != nil {
					return err
				}
				res.Canceled += n
			}
		}
		return nil
	})
	if err != nil {
		return SettingsUpdate{}, fmt.Errorf("update notification settings: %w", err)
	}
	s.Wake()
	return res, nil
}

// testTitle is the title of a test send.
const testTitle = "Bastion test notification"

// Destination is a notification destination: a Hub secret of a channel's secret kind.
type Destination struct {
	Channel   string `json:"channel"`
	Name      string `json:"name"`
	Enabled   bool   `json:"enabled"`
	UpdatedAt int64  `json:"updated_at"`
}

// Destinations lists every destination, by channel and name.
func (s *Service) Destinations(ctx context.Context) ([]Destination, error) {
	ds, err := s.db.Reader().ListNotificationDestinations(ctx, secrets.HubNode, storageKinds(s.channels))
	if err != nil {
		return nil, err
	}
	out := make([]Destination, 0, len(ds))
	for _, d := range ds {
		out = append(out, Destination{Channel: d.Channel, Name: d.Name, Enabled: d.Enabled, UpdatedAt: d.UpdatedAt})
	}
	return out, nil
}

// SetDestinationEnabled switches a destination on or off. Switching it off cancels its queued
// rows (a row being sent meets the send-time re-check).
func (s *Service) SetDestinationEnabled(ctx context.Context, channel, name string, enabled bool) (canceled int64, err error) {
	if !ValidChannel(channel) {
		return 0, invalidChannel(channel)
	}
	now := s.clock.Now().Unix()
	err = s.db.Write(ctx, func(q storage.Q) error {
		canceled = 0
		if err := q.SetNotificationDestinationEnabled(ctx, secrets.HubNode, SecretKindOf(channel), name, enabled, now); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return ErrDestinationNotFound
			}
			return err
		}
		if !enabled {
			canceled, err = q.CancelQueuedNotifications(ctx, channel, name, ReasonDestinationDisabled, now)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	s.Wake()
	return canceled, nil
}

// DestinationDeleted cancels the queued rows of a destination whose secret is being deleted.
// Call it inside the transaction that deletes the secret, or right after the delete with
// db.Writer() (a row missed between the two is canceled by the worker's send-time check anyway).
// kind is the secret kind; kinds that are no channel's destinations are ignored. Its failed rows
// stay, listed as destination_deleted. A row being sent meets the send-time re-check and ends
// canceled too.
func (s *Service) DestinationDeleted(ctx context.Context, q storage.Q, kind, name string) (int64, error) {
	d, ok := s.channels.ByKind(kind)
	if !ok {
		return 0, nil
	}
	return q.CancelQueuedNotifications(ctx, d.Name(), name, ReasonDestinationDeleted, s.clock.Now().Unix())
}

// SecretDeleted is DestinationDeleted for a secret whose delete has committed, with the signature
// of httpapi.Config.OnSecretDeleted.
func (s *Service) SecretDeleted(ctx context.Context, kind, name string) error {
	n, err := s.DestinationDeleted(ctx, s.db.Writer(), kind, name)
	if err != nil {
		return fmt.Errorf("cancel notifications for deleted destination %s/%s: %w", kind, name, err)
	}
	if n > 0 {
		s.log.Info().Str("secret_kind", kind).Str("secret_name", name).Int64("canceled", n).
			Msg("canceled queued notifications of a deleted destination")
	}
	return nil
}

// TestDestination sends a fixed test message (not the templates) naming the destination and the
// time, synchronously, whatever the switches say. A refusal by the receiver is a KindUpstream
// *Error carrying the receiver's message.
func (s *Service) TestDestination(ctx context.Context, channelName, name string) error {
	if !ValidChannel(channelName) {
		return invalidChannel(channelName)
	}
	d, _ := s.channels.Get(channelName)
	raw, err := s.secrets.Get(ctx, secrets.HubNode, d.SecretKind(), name)
	if isSecretNotFound(err) {
		return ErrDestinationNotFound
	}
	if err != nil {
		return fmt.Errorf("read destination %s/%s: %w", channelName, name, err)
	}
	dest, err := d.DecodeDestination(raw)
	if err != nil {
		return &Error{Kind: KindInvalid, Code: "invalid_destination", Message: "Destination is not valid: " + err.Error()}
	}
	err = d.Send(ctx, testMessage(name, "test-"+uuid.NewString(), s.clock.Now().UTC(), dest))
	if err != nil {
		return &Error{Kind: KindUpstream, Code: "notification_test_failed", Message: err.Error(), SendKind: send.Classify(err)}
	}
	return nil
}

// testMessage is the fixed message of a test send to destination name: every channel's Test
// text with the name and the time filled in.
func testMessage(name, id string, now time.Time, dest any) channel.Message {
	fill := strings.NewReplacer("{{destination}}", name, "{{time}}", now.Format(time.RFC3339))
	text := map[string]string{}
	for _, t := range builtin.Templates() {
		text[t.Key] = fill.Replace(t.Test)
	}
	return channel.Message{Event: channel.EventTest, DeliveryID: id, Date: now, Destination: dest,
		Values: Values{Title: testTitle}, Text: text}
}

// QueueQuery selects a page of the queue. Statuses and Channels filter (empty: all). With Cursor
// (from a previous page's NextCursor) the page continues after it; otherwise Page (from 1) and
// PageSize (1–100, default 20) select it.
type QueueQuery struct {
	Statuses []string
	Channels []string
	Page     int
	PageSize int
	Cursor   string
}

// QueueItem is a queue row as the API shows it: the row's fields (not lease_until, the worker's
// claim token) plus job_id, job_name, destination (the secret name again, as the original
// names it) and the destination's flags.
type QueueItem struct {
	ID                 string  `json:"id"`
	RunID              string  `json:"run_id"`
	JobID              string  `json:"job_id"`
	JobName            string  `json:"job_name"`
	Channel            string  `json:"channel"`
	SecretName         string  `json:"secret_name"`
	Destination        string  `json:"destination"`
	Status             string  `json:"status"`
	Attempts           int     `json:"attempts"`
	NextAttemptAt      int64   `json:"next_attempt_at"`
	CreatedAt          int64   `json:"created_at"`
	UpdatedAt          int64   `json:"updated_at"`
	SentAt             *int64  `json:"sent_at"`
	LastError          *string `json:"last_error"`
	LastErrorKind      *string `json:"last_error_kind"`
	DestinationDeleted bool    `json:"destination_deleted"`
	DestinationEnabled bool    `json:"destination_enabled"`
}

// QueuePage is one page of the queue, newest first.
type QueuePage struct {
	Items      []QueueItem `json:"items"`
	Page       int         `json:"page"`
	PageSize   int         `json:"page_size"`
	Total      int64       `json:"total"`
	NextCursor *string     `json:"next_cursor"`
}

var notificationStatuses = []string{storage.NotificationQueued, storage.NotificationSending,
	storage.NotificationSent, storage.NotificationFailed, storage.NotificationCanceled}

// EncodeCursor makes the opaque cursor of a position: base64url of JSON {created_at, id}.
func EncodeCursor(c storage.NotificationCursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor parses a cursor made by EncodeCursor (padded or standard base64 accepted too).
func DecodeCursor(s string) (storage.NotificationCursor, error) {
	var c storage.NotificationCursor
	bad := &Error{Kind: KindInvalid, Code: "invalid_cursor", Field: "cursor", Reason: "invalid_format", Message: "Invalid cursor"}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil || json.Unmarshal(raw, &c) != nil || c.ID == "" {
		return c, bad
	}
	return c, nil
}

// Queue returns a page of the queue.
func (s *Service) Queue(ctx context.Context, qq QueueQuery) (QueuePage, error) {
	statuses, channels := dedupe(qq.Statuses), dedupe(qq.Channels)
	for _, st := range statuses {
		if !slices.Contains(notificationStatuses, st) {
			return QueuePage{}, &Error{Kind: KindInvalid, Code: "invalid_status", Field: "status", Reason: "unsupported",
				Message: fmt.Sprintf("Unsupported notification status %q", st)}
		}
	}
	for _, ch := range channels {
		if !ValidChannel(ch) {
			return QueuePage{}, invalidChannel(ch)
		}
	}
	page := max(qq.Page, 1)
	size := qq.PageSize
	if size == 0 {
		size = 20
	}
	size = min(max(size, 1), 100)
	f := storage.NotificationQueueFilter{Node: secrets.HubNode, Kinds: storageKinds(s.channels), Statuses: statuses, Channels: channels,
		Limit: size + 1, Offset: (page - 1) * size}
	if qq.Cursor != "" {
		c, err := DecodeCursor(qq.Cursor)
		if err != nil {
			return QueuePage{}, err
		}
		f.After = &c
	}
	out := QueuePage{Page: page, PageSize: size, Items: []QueueItem{}}
	err := s.db.Read(ctx, func(q storage.Q) error {
		rows, err := q.ListNotificationQueue(ctx, f)
		if err != nil {
			return err
		}
		if len(rows) > size {
			rows = rows[:size]
			last := rows[size-1]
			c := EncodeCursor(storage.NotificationCursor{CreatedAt: last.CreatedAt, ID: last.ID})
			out.NextCursor = &c
		}
		for _, r := range rows {
			out.Items = append(out.Items, QueueItem{ID: r.ID, RunID: r.RunID, JobID: r.JobID, JobName: r.JobName,
				Channel: r.Channel, SecretName: r.SecretName, Destination: r.SecretName, Status: r.Status, Attempts: r.Attempts,
				NextAttemptAt: r.NextAttemptAt, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, SentAt: r.SentAt,
				LastError: r.LastError, LastErrorKind: r.LastErrorKind,
				DestinationDeleted: r.DestinationDeleted, DestinationEnabled: r.DestinationEnabled})
		}
		out.Total, err = q.CountNotificationQueue(ctx, f)
		return err
	})
	if err != nil {
		return QueuePage{}, err
	}
	return out, nil
}

func dedupe(in []string) []string {
	var out []string
	for _, v := range in {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// RetryNow re-queues a failed or canceled row as due now with a fresh attempt count, and wakes
// the worker. It is refused while notifications, the row's channel or its destination are off,
// or when the destination is gone.
func (s *Service) RetryNow(ctx context.Context, id string) error {
	now := s.clock.Now().Unix()
	err := s.db.Write(ctx, func(q storage.Q) error {
		n, err := q.GetNotification(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			return ErrNotificationNotFound
		}
		if err != nil {
			return err
		}
		switch reason, err := s.recheck(ctx, q, n.Channel, n.SecretName); {
		case err != nil:
			return err
		case reason == ReasonNotificationsDisabled:
			return ErrNotificationsDisabled
		case reason == ReasonChannelDisabled:
			return ErrChannelDisabled
		case reason == ReasonDestinationDeleted:
			return ErrDestinationDeleted
		case reason == ReasonDestinationDisabled:
			return ErrDestinationDisabled
		}
		ok, err := q.RetryNotificationNow(ctx, id, now)
		if err == nil && !ok {
			return ErrNotRetryable
		}
		return err
	})
	if err != nil {
		return err
	}
	s.Wake()
	return nil
}

// Cancel cancels a queued row ("canceled: user"); any other status is ErrNotCancelable.
func (s *Service) Cancel(ctx context.Context, id string) error {
	now := s.clock.Now().Unix()
	return s.db.Write(ctx, func(q storage.Q) error {
		if _, err := q.GetNotification(ctx, id); errors.Is(err, storage.ErrNotFound) {
			return ErrNotificationNotFound
		} else if err != nil {
			return err
		}
		ok, err := q.CancelQueuedNotification(ctx, id, ReasonUser, now)
		if err == nil && !ok {
			return ErrNotCancelable
		}
		return err
	})
}
