// Package notify tells operators how their backup runs ended: it queues one message per run and
// destination when a run ends, and a worker delivers the queue through the notification channels
// (package channel/all: WeCom group bots, email over SMTP, generic webhooks), retrying with
// backoff.
//
// The queue lives in the notifications table. The worker sleeps until the next row is due (or
// indefinitely when nothing is queued) and is woken at once by Wake: after an enqueue commits,
// after retry-now and after a settings change. Deliveries to different destinations run in
// parallel (bounded), at most one at a time per destination and within a per-destination rate, so
// one dead receiver never delays the others.
package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/internal/lograte"
	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/engine/notify/channel/all"
	"github.com/bastion-backup/bastion/engine/notify/send"
	"github.com/bastion-backup/bastion/storage"
)

// SecretReader reads decrypted secret payloads. The encrypted secret store implements it.
type SecretReader interface {
	// Get returns the payload of a secret, or an error wrapping ErrSecretNotFound (or
	// storage.ErrNotFound) when there is none.
	Get(ctx context.Context, node, kind, name string) ([]byte, error)
}

// ErrSecretNotFound may be wrapped by a SecretReader for a missing secret.
var ErrSecretNotFound = errors.New("secret not found")

func isSecretNotFound(err error) bool {
	return errors.Is(err, ErrSecretNotFound) || errors.Is(err, storage.ErrNotFound)
}

// EventAppender appends run events inside the caller's write transaction, so that an event and
// the queue transition it reports commit together.
type EventAppender interface {
	AppendRunEvents(ctx context.Context, q storage.Q, events []storage.RunEvent) error
}

// StorageEvents appends run events with storage.Q.AppendRunEvents and publishes nothing.
type StorageEvents struct{}

func (StorageEvents) AppendRunEvents(ctx context.Context, q storage.Q, events []storage.RunEvent) error {
	return q.AppendRunEvents(ctx, events)
}

// Webhook events (the "event" field and the X-Bastion-Event header).
const (
	WebhookEventRunFinished = channel.EventRunFinished
	// WebhookEventVerifyFailed reports a failed restore drill; operation_id names it.
	WebhookEventVerifyFailed = channel.EventVerifyFailed
	WebhookEventTest         = channel.EventTest
)

// Retry schedule: attempt n (1-based) failing waits min(MaxBackoff, BaseBackoff·2^(n−1)); the
// MaxAttempts-th failure is final.
const (
	MaxAttempts = 10
	BaseBackoff = 30 * time.Second
	MaxBackoff  = time.Hour
	// MaxRetryAfter caps how long a receiver's Retry-After can push an attempt out.
	MaxRetryAfter = 6 * time.Hour
)

// Backoff is the wait after the attempts-th consecutive failure.
func Backoff(attempts int) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	d := BaseBackoff
	for i := 1; i < attempts && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// RetryDelay is the wait after the attempts-th failure when the receiver asked for retryAfter
// (0: it did not): the larger of the backoff and the request, the request capped at
// MaxRetryAfter.
func RetryDelay(attempts int, retryAfter time.Duration) time.Duration {
	return max(Backoff(attempts), min(retryAfter, MaxRetryAfter))
}

// Options configure a Service. DB and Secrets are required.
type Options struct {
	DB      *storage.DB
	Secrets SecretReader
	Events  EventAppender // default StorageEvents
	// Publish, when set, is given the run events after the transaction that appended them
	// committed, for live subscribers (e.g. runs.Service.Bus().Publish).
	Publish func(events ...storage.RunEvent)
	Clock   clock.Clock // default clock.Real
	Logger  zerolog.Logger
	// Channels deliver messages; default the list of package all. Tests wrap its drivers to
	// inject faults; the names must stay those of the list.
	Channels channel.List
	// PublicBaseURL (e.g. https://backup.example.com) makes {{run_url}} and the webhook body's
	// run_url; empty leaves them "-" / null.
	PublicBaseURL string
	// Concurrency bounds deliveries in flight across all destinations; default 4.
	Concurrency int
	// RateEvery and RateBurst limit deliveries per destination: a burst of RateBurst, then one
	// every RateEvery. Defaults 3 s and 5 (WeCom bots take 20 messages a minute); a negative
	// RateEvery disables the limit.
	RateEvery time.Duration
	RateBurst int
	// Lease is how long a claimed row may stay 'sending' before it is presumed abandoned and
	// queued again; default 5 minutes. It must exceed the longest attempt (SMTP: 60 s).
	Lease time.Duration
}

// Service owns the notification queue: enqueueing, the delivery worker and the operations the
// HTTP API exposes.
type Service struct {
	db        *storage.DB
	secrets   SecretReader
	events    EventAppender
	publish   func(events ...storage.RunEvent)
	clock     clock.Clock
	log       zerolog.Logger
	channels  channel.List
	baseURL   string
	conc      int
	rateEvery time.Duration
	rateBurst int
	lease     time.Duration

	wake chan struct{} // cap 1; Wake does a non-blocking send

	badSettingsLog lograte.Limiter // unreadable settings, seen at every run's end

	// Test hooks, set before Run.
	hookIdle func(idleReport) // the loop is about to wait
	hookTick func()           // called in each tick after it read the clock (tests move time here)
	hookMu   sync.Mutex
	loops    int64 // loop iterations after the first, i.e. wake-ups
}

// New builds a Service. Call Run to start its worker.
func New(opts Options) (*Service, error) {
	if opts.DB == nil || opts.Secrets == nil {
		return nil, errors.New("notify: DB and Secrets are required")
	}
	s := &Service{
		db: opts.DB, secrets: opts.Secrets, events: opts.Events, publish: opts.Publish, clock: opts.Clock,
		log:      opts.Logger.With().Str("component", "notify").Logger(),
		channels: opts.Channels, baseURL: opts.PublicBaseURL,
		conc: opts.Concurrency, rateEvery: opts.RateEvery, rateBurst: opts.RateBurst, lease: opts.Lease,
		wake: make(chan struct{}, 1),
	}
	if s.events == nil {
		s.events = StorageEvents{}
	}
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	if s.channels == nil {
		s.channels = all.Drivers()
	}
	if s.conc <= 0 {
		s.conc = 4
	}
	if s.rateEvery == 0 {
		s.rateEvery = 3 * time.Second
	}
	if s.rateBurst <= 0 {
		s.rateBurst = 5
	}
	if s.lease <= 0 {
		s.lease = 5 * time.Minute
	}
	return s, nil
}

// Wake makes the worker look at the queue at once. It never blocks; call it after committing an
// enqueue, a retry or a settings change.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// ErrorKind says how the HTTP layer should answer an *Error.
type ErrorKind int

const (
	KindInvalid  ErrorKind = iota + 1 // 400
	KindNotFound                      // 404
	KindConflict                      // 409
	KindUpstream                      // the receiver refused a test message (502)
)

// Error is a refusal the API reports to the client with its Code.
type Error struct {
	Kind    ErrorKind
	Code    string
	Message string
	Field   string // for KindInvalid
	Reason  string // for KindInvalid
	// SendKind classifies a KindUpstream failure (auth, rate_limited, network, unknown).
	SendKind send.Kind
}

func (e *Error) Error() string { return e.Message }

// Is matches errors by Code, so errors.Is(err, ErrNotRetryable) works on a copy.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// Refusals of the queue and destination operations.
var (
	ErrNotificationNotFound  = &Error{Kind: KindNotFound, Code: "notification_not_found", Message: "Notification not found"}
	ErrDestinationNotFound   = &Error{Kind: KindNotFound, Code: "destination_not_found", Message: "Destination not found"}
	ErrNotificationsDisabled = &Error{Kind: KindConflict, Code: "notifications_disabled", Message: "Notifications are disabled"}
	ErrChannelDisabled       = &Error{Kind: KindConflict, Code: "channel_disabled", Message: "Channel is disabled"}
	ErrDestinationDeleted    = &Error{Kind: KindConflict, Code: "destination_deleted", Message: "Destination has been deleted"}
	ErrDestinationDisabled   = &Error{Kind: KindConflict, Code: "destination_disabled", Message: "Destination is disabled"}
	ErrNotRetryable          = &Error{Kind: KindConflict, Code: "not_retryable", Message: "Notification is not retryable"}
	ErrNotCancelable         = &Error{Kind: KindConflict, Code: "not_cancelable", Message: "Notification is not cancelable"}
)

func invalidChannel(c string) *Error {
	return &Error{Kind: KindInvalid, Code: "invalid_channel", Field: "channel", Reason: "unsupported",
		Message: fmt.Sprintf("Unsupported notification channel %q", c)}
}

// Cancel reasons written to last_error.
const (
	ReasonNotificationsDisabled = "canceled: notifications disabled"
	ReasonChannelDisabled       = "canceled: channel disabled"
	ReasonDestinationDisabled   = "canceled: destination disabled"
	ReasonDestinationDeleted    = "canceled: destination deleted"
	ReasonUser                  = "canceled: user"
)
