// Package channel defines what a notification channel is: a Driver that knows its destination
// payload, its templates and how to send one message. Each channel lives in its own package
// below this one; package all holds the one list of them that the rest of the Hub asks.
package channel

import (
	"context"
	"time"

	"github.com/bastion-backup/bastion/engine/secrets"
)

// Driver is one notification channel. Implementations are stateless values: the list in package
// all builds them once and everything else only reads them.
type Driver interface {
	// Name is the channel's name: the queue rows' channel column, the settings' channels key, the
	// job spec's notifications list and the {channel} of the API paths. Lower case, [a-z0-9_],
	// never changed once released (stored rows carry it).
	Name() string
	// SecretKind is the kind of the Hub secret that holds one destination of this channel. The
	// secrets API serves it at /api/secrets/{kind} with "_" spelt "-".
	SecretKind() string
	// Protocol names the wire protocol in error envelopes ("http", "smtp").
	Protocol() string
	// Templates are the message templates the channel renders, in display order.
	Templates() []Template
	// DecodeDestination parses and validates a destination payload (the secret's JSON), rejecting
	// unknown fields and trailing data. The result is what Send finds in Message.Destination.
	// Errors must not echo the payload: it holds credentials. A *secrets.ValidationError names
	// the field for the API (secrets.DecodeStrict does the parsing part).
	DecodeDestination(raw []byte) (any, error)
	// Send makes one delivery attempt. Errors should be *send.Error (see package send) so that the
	// worker can classify them and honour Retry-After; they must not contain credentials.
	Send(ctx context.Context, m Message) error
}

// Template is one message template of a channel. Keys are global across channels (they are the
// settings document's templates keys), so a channel prefixes its own: "email_subject".
type Template struct {
	Key string
	// Label and DrillLabel name the template in error messages ("Email subject template").
	Label, DrillLabel string
	// Run and VerifyFailed are the defaults for a finished run and a failed restore drill.
	Run, VerifyFailed string
	// Test is the fixed text of a test send; {{destination}} and {{time}} are replaced.
	Test string
	// Lines is the editor's height hint for the web UI (1 for a subject line).
	Lines int
}

// Events a Message reports (also the webhook's "event" field).
const (
	EventRunFinished  = "run_finished"
	EventVerifyFailed = "verify_failed"
	EventTest         = "test"
)

// Message is one notification, rendered, for one destination.
type Message struct {
	Event string
	// DeliveryID is the notification id: the same on every attempt of one notification, so a
	// receiver can drop a repeat (test sends get a fresh "test-…" id).
	DeliveryID string
	Date       time.Time
	// Destination is what the driver's DecodeDestination returned.
	Destination any
	// Values are the placeholder values (zero for a test send, apart from Title).
	Values Values
	// Text holds every template of every channel rendered for this message, by template key, so
	// a channel may relay another's text (the webhook carries the email subject and body).
	Text map[string]string
}

// Values are what the placeholders of a template stand for, for one run.
type Values struct {
	Title          string
	Status         string
	StatusText     string
	JobID          string
	JobName        string
	RunID          string
	StartedAt      string
	EndedAt        string
	TargetType     string
	TargetLocation string
	Target         string
	Error          string
	RunURL         string
	// OperationID and OperationURL name the drill of a verify_failed notification ("-" otherwise).
	OperationID  string
	OperationURL string

	TargetLineWeCom, ErrorLineWeCom, ConsistencyLineWeCom string
	TargetLineEmail, ErrorLineEmail, ConsistencyLineEmail string
	ConsistencyChangedTotal                               int64
}

// List is a list of drivers, in display order.
type List []Driver

// Get returns the driver named name.
func (l List) Get(name string) (Driver, bool) {
	for _, d := range l {
		if d.Name() == name {
			return d, true
		}
	}
	return nil, false
}

// ByKind returns the driver whose destinations are secrets of kind.
func (l List) ByKind(kind string) (Driver, bool) {
	for _, d := range l {
		if d.SecretKind() == kind {
			return d, true
		}
	}
	return nil, false
}

// Names lists the channel names.
func (l List) Names() []string {
	out := make([]string, len(l))
	for i, d := range l {
		out[i] = d.Name()
	}
	return out
}

// Templates lists every channel's templates, in list order.
func (l List) Templates() []Template {
	var out []Template
	for _, d := range l {
		out = append(out, d.Templates()...)
	}
	return out
}

// DecodeDestination is the DecodeDestination of a channel whose destination is the secret payload
// T: strict JSON decoding, then T's own validation.
func DecodeDestination[T interface{ Validate() error }](raw []byte) (any, error) {
	var p T
	if err := secrets.DecodeStrict(raw, &p); err != nil {
		return nil, err
	}
	return p, p.Validate()
}
