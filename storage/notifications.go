package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Notification statuses.
const (
	NotificationQueued   = "queued"
	NotificationSending  = "sending"
	NotificationSent     = "sent"
	NotificationFailed   = "failed"
	NotificationCanceled = "canceled"
)

// Notification is a row of the notification queue: one message for one run to one destination.
type Notification struct {
	ID            string
	RunID         string
	Channel       string // a channel name (engine/notify/channel/all)
	SecretName    string
	Status        string
	Attempts      int
	NextAttemptAt int64
	LeaseUntil    *int64 // set while sending: the claim token and the crash-recovery deadline
	LastError     *string
	LastErrorKind *string
	SentAt        *int64
	CreatedAt     int64
	UpdatedAt     int64
	// EventKind is what the notification reports: NotificationEventRun ("" reads as that) or
	// NotificationEventVerifyFailed, whose OperationID names the failed drill.
	EventKind   string
	OperationID string
}

// Notification event kinds.
const (
	NotificationEventRun          = "run"
	NotificationEventVerifyFailed = "verify_failed"
)

// DestinationKey names a destination as "<channel>/<secret_name>". Channel names and secret names
// never contain "/", so the key is unambiguous.
func DestinationKey(channel, secretName string) string { return channel + "/" + secretName }

const notificationColumns = `id, run_id, channel, secret_name, status, attempts, next_attempt_at, lease_until,
	last_error, last_error_kind, sent_at, created_at, updated_at, event_kind, operation_id`

// Hot queries of the notification worker. Ties on next_attempt_at are left to the index's order
// (insertion order): ordering by more columns would sort every due row on each claim. Destinations to skip (a delivery in flight, or over
// their rate limit) are excluded with a NOT IN list of DestinationKey strings appended by
// claimQuery and nextDueQuery.
const (
	qClaimNotificationHead = `UPDATE notifications SET status = 'sending', lease_until = ?, updated_at = ?
		WHERE status = 'queued' AND id = (SELECT id FROM notifications
			WHERE status = 'queued' AND next_attempt_at <= ?`
	qClaimNotificationTail = `
			ORDER BY next_attempt_at LIMIT 1)
		RETURNING ` + notificationColumns
	qNextNotificationDueHead = `SELECT next_attempt_at FROM notifications WHERE status = 'queued'`
	qNextNotificationDueTail = ` ORDER BY next_attempt_at LIMIT 1`
	qRecoverExpiredLeases    = `UPDATE notifications SET status = 'queued', lease_until = NULL, updated_at = ?
		WHERE status = 'sending' AND (lease_until IS NULL OR lease_until < ?)`
	qRecoverAllSending = `UPDATE notifications SET status = 'queued', lease_until = NULL, updated_at = ?
		WHERE status = 'sending'`
	qCancelQueuedForDestination = `UPDATE notifications SET status = 'canceled', last_error = ?, last_error_kind = NULL, updated_at = ?
		WHERE channel = ? AND secret_name = ? AND status = 'queued'`
	qCancelQueuedForChannel = `UPDATE notifications SET status = 'canceled', last_error = ?, last_error_kind = NULL, updated_at = ?
		WHERE channel = ? AND status = 'queued'`
	qCancelAllQueued = `UPDATE notifications SET status = 'canceled', last_error = ?, last_error_kind = NULL, updated_at = ?
		WHERE status = 'queued'`
)

// excludeDestinations is the SQL condition and arguments skipping the destinations in exclude.
func excludeDestinations(exclude []string) (string, []any) {
	if len(exclude) == 0 {
		return "", nil
	}
	args := make([]any, len(exclude))
	for i, k := range exclude {
		args[i] = k
	}
	return ` AND channel || '/' || secret_name NOT IN (` + placeholders(len(exclude)) + `)`, args
}

func claimQuery(now, leaseUntil int64, exclude []string) (string, []any) {
	cond, ex := excludeDestinations(exclude)
	return qClaimNotificationHead + cond + qClaimNotificationTail, append([]any{leaseUntil, now, now}, ex...)
}

func nextDueQuery(exclude []string) (string, []any) {
	cond, ex := excludeDestinations(exclude)
	return qNextNotificationDueHead + cond + qNextNotificationDueTail, ex
}

func scanNotification(sc interface{ Scan(...any) error }) (Notification, error) {
	var n Notification
	err := sc.Scan(&n.ID, &n.RunID, &n.Channel, &n.SecretName, &n.Status, &n.Attempts, &n.NextAttemptAt,
		&n.LeaseUntil, &n.LastError, &n.LastErrorKind, &n.SentAt, &n.CreatedAt, &n.UpdatedAt, &n.EventKind, &n.OperationID)
	return n, err
}

func (n Notification) eventKind() string {
	if n.EventKind == "" {
		return NotificationEventRun
	}
	return n.EventKind
}

// InsertNotification queues n unless the run already has a row for that destination
// (UNIQUE(run_id, event_kind, operation_id, channel, secret_name)); it reports whether a row was inserted. A repeated enqueue
// for the same run is therefore a no-op and can never send twice.
func (q Q) InsertNotification(ctx context.Context, n Notification) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `INSERT OR IGNORE INTO notifications(`+notificationColumns+`)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		n.ID, n.RunID, n.Channel, n.SecretName, n.Status, n.Attempts, n.NextAttemptAt, n.LeaseUntil,
		n.LastError, n.LastErrorKind, n.SentAt, n.CreatedAt, n.UpdatedAt, n.eventKind(), n.OperationID)
	if err != nil {
		return false, fmt.Errorf("queue notification for run %s via %s: %w", n.RunID, n.Channel, err)
	}
	k, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("queue notification for run %s via %s: %w", n.RunID, n.Channel, err)
	}
	return k == 1, nil
}

// GetNotification returns a queue row or ErrNotFound.
func (q Q) GetNotification(ctx context.Context, id string) (Notification, error) {
	n, err := scanNotification(q.ex.QueryRowContext(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE id = ?`, id))
	if err != nil {
		return Notification{}, fmt.Errorf("get notification %s: %w", id, notFound(err))
	}
	return n, nil
}

// ClaimNotification moves the oldest due queued row (by next_attempt_at) whose destination is not
// in exclude to 'sending' with lease_until = leaseUntil, in one statement, and returns it. It
// returns ErrNotFound when nothing is claimable. The lease is the claim token: completing
// statements match it, so a row recovered after its lease expired cannot be completed by the
// delivery that lost it.
func (q Q) ClaimNotification(ctx context.Context, now, leaseUntil int64, exclude []string) (Notification, error) {
	query, args := claimQuery(now, leaseUntil, exclude)
	n, err := scanNotification(q.ex.QueryRowContext(ctx, query, args...))
	if err != nil {
		return Notification{}, fmt.Errorf("claim due notification: %w", notFound(err))
	}
	return n, nil
}

// NextNotificationDue returns the earliest next_attempt_at of a queued row whose destination is
// not in exclude; ok is false when there is none.
func (q Q) NextNotificationDue(ctx context.Context, exclude []string) (at int64, ok bool, err error) {
	query, args := nextDueQuery(exclude)
	err = q.ex.QueryRowContext(ctx, query, args...).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read next notification due time: %w", err)
	}
	return at, true, nil
}

// RecoverSendingNotifications puts rows left 'sending' back to 'queued'. With all set (at start,
// when no delivery of this process can be in flight) every such row is recovered; otherwise only
// rows whose lease ended before now. The attempt count is left alone: the interrupted attempt
// may or may not have reached the receiver, which the idempotency key lets it recognise.
func (q Q) RecoverSendingNotifications(ctx context.Context, now int64, all bool) (int64, error) {
	query, args := qRecoverExpiredLeases, []any{now, now}
	if all {
		query, args = qRecoverAllSending, []any{now}
	}
	res, err := q.ex.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("recover notifications left sending: %w", err)
	}
	return res.RowsAffected()
}

// NotificationOutcome is how a delivery attempt ended.
type NotificationOutcome struct {
	Status        string // sent | queued (retry) | failed | canceled
	Attempts      int
	NextAttemptAt int64 // for queued
	LastError     *string
	LastErrorKind *string
	SentAt        *int64
}

// CompleteNotification records the outcome of the delivery that claimed row id with lease. It
// reports false, changing nothing, when the row is no longer that claim (recovered after its
// lease expired, or deleted with its run).
func (q Q) CompleteNotification(ctx context.Context, id string, lease int64, o NotificationOutcome, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE notifications SET status = ?, attempts = ?, next_attempt_at = ?,
		lease_until = NULL, last_error = ?, last_error_kind = ?, sent_at = COALESCE(?, sent_at), updated_at = ?
		WHERE id = ? AND status = 'sending' AND lease_until = ?`,
		o.Status, o.Attempts, o.NextAttemptAt, o.LastError, o.LastErrorKind, o.SentAt, now, id, lease)
	if err != nil {
		return false, fmt.Errorf("complete notification %s as %s: %w", id, o.Status, err)
	}
	k, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("complete notification %s as %s: %w", id, o.Status, err)
	}
	return k == 1, nil
}

// ReleaseNotification returns a claimed row to 'queued' without counting an attempt (the Hub is
// shutting down mid-delivery). It reports false when the claim is no longer held.
func (q Q) ReleaseNotification(ctx context.Context, id string, lease, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE notifications SET status = 'queued', lease_until = NULL, updated_at = ?
		WHERE id = ? AND status = 'sending' AND lease_until = ?`, now, id, lease)
	if err != nil {
		return false, fmt.Errorf("release notification %s: %w", id, err)
	}
	k, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("release notification %s: %w", id, err)
	}
	return k == 1, nil
}

// CancelQueuedNotifications cancels queued rows with reason as last_error: all of them when
// channel is empty, a channel's when secretName is empty, else one destination's. Rows being
// sent are left to the worker's send-time re-check.
func (q Q) CancelQueuedNotifications(ctx context.Context, channel, secretName, reason string, now int64) (int64, error) {
	var res sql.Result
	var err error
	switch {
	case channel == "":
		res, err = q.ex.ExecContext(ctx, qCancelAllQueued, reason, now)
	case secretName == "":
		res, err = q.ex.ExecContext(ctx, qCancelQueuedForChannel, reason, now, channel)
	default:
		res, err = q.ex.ExecContext(ctx, qCancelQueuedForDestination, reason, now, channel, secretName)
	}
	if err != nil {
		return 0, fmt.Errorf("cancel queued notifications (%s): %w", reason, err)
	}
	return res.RowsAffected()
}

// CancelQueuedNotification cancels one row if it is queued; false means it was not (or is gone).
func (q Q) CancelQueuedNotification(ctx context.Context, id, reason string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE notifications SET status = 'canceled', last_error = ?, last_error_kind = NULL,
		updated_at = ? WHERE id = ? AND status = 'queued'`, reason, now, id)
	if err != nil {
		return false, fmt.Errorf("cancel notification %s: %w", id, err)
	}
	k, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("cancel notification %s: %w", id, err)
	}
	return k == 1, nil
}

// RetryNotificationNow re-queues a failed or canceled row as due at now with a fresh attempt
// count; false means the row is in another status (or gone).
func (q Q) RetryNotificationNow(ctx context.Context, id string, now int64) (bool, error) {
	res, err := q.ex.ExecContext(ctx, `UPDATE notifications SET status = 'queued', attempts = 0, next_attempt_at = ?,
		lease_until = NULL, updated_at = ? WHERE id = ? AND status IN ('failed', 'canceled')`, now, now, id)
	if err != nil {
		return false, fmt.Errorf("retry notification %s: %w", id, err)
	}
	k, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("retry notification %s: %w", id, err)
	}
	return k == 1, nil
}

// NotificationKind pairs a notification channel with the kind of the secrets that are its
// destinations. The engine's channel list supplies them: storage knows no channel by name.
type NotificationKind struct {
	Channel    string
	SecretKind string
}

// kindCase is a SQL CASE mapping expr (a channel or a secret kind, per toKind) through kinds,
// NULL when nothing matches, with its arguments.
func kindCase(expr string, kinds []NotificationKind, toKind bool) (string, []any) {
	if len(kinds) == 0 {
		return "NULL", nil
	}
	var b strings.Builder
	args := make([]any, 0, 2*len(kinds))
	b.WriteString("CASE " + expr)
	for _, k := range kinds {
		b.WriteString(" WHEN ? THEN ?")
		if toKind {
			args = append(args, k.Channel, k.SecretKind)
		} else {
			args = append(args, k.SecretKind, k.Channel)
		}
	}
	b.WriteString(" END")
	return b.String(), args
}

// NotificationDestination is a Hub secret usable as a notification destination, with its enable
// flag (no notification_destinations row = enabled).
type NotificationDestination struct {
	Channel   string
	Name      string
	Enabled   bool
	UpdatedAt int64 // the later of the secret's and the flag's updates
}

func listDestinationsQuery(node string, kinds []NotificationKind) (string, []any) {
	channelOf, args := kindCase("s.kind", kinds, false)
	in := make([]any, len(kinds))
	for i, k := range kinds {
		in[i] = k.SecretKind
	}
	cond := "0"
	if len(kinds) > 0 {
		cond = "s.kind IN (" + placeholders(len(kinds)) + ")"
	}
	return `SELECT ` + channelOf + `, s.name,
		COALESCE(d.enabled, 1), MAX(s.updated_at, COALESCE(d.updated_at, 0))
	FROM secrets s LEFT JOIN notification_destinations d
		ON d.node_id = s.node_id AND d.secret_kind = s.kind AND d.secret_name = s.name
	WHERE s.node_id = ? AND ` + cond + `
	ORDER BY 1, 2`, append(append(args, node), in...)
}

// ListNotificationDestinations returns node's secrets of the kinds of kinds with their flags,
// as destinations of their channels, ordered by channel and name.
func (q Q) ListNotificationDestinations(ctx context.Context, node string, kinds []NotificationKind) ([]NotificationDestination, error) {
	query, args := listDestinationsQuery(node, kinds)
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list notification destinations: %w", err)
	}
	defer rows.Close()
	var out []NotificationDestination
	for rows.Next() {
		var d NotificationDestination
		if err := rows.Scan(&d.Channel, &d.Name, &d.Enabled, &d.UpdatedAt); err != nil {
			return nil, fmt.Errorf("list notification destinations: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list notification destinations: %w", err)
	}
	return out, nil
}

// NotificationDestinationState reports whether the secret behind a destination (secret kind and
// name) exists and whether the destination is enabled.
func (q Q) NotificationDestinationState(ctx context.Context, node, kind, name string) (exists, enabled bool, err error) {
	err = q.ex.QueryRowContext(ctx, `SELECT 1, COALESCE((SELECT enabled FROM notification_destinations
			WHERE node_id = s.node_id AND secret_kind = s.kind AND secret_name = s.name), 1)
		FROM secrets s WHERE s.node_id = ? AND s.kind = ? AND s.name = ?`, node, kind, name).Scan(&exists, &enabled)
	if errors.Is(err, sql.ErrNoRows) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("read destination %s/%s: %w", kind, name, err)
	}
	return exists, enabled, nil
}

// SetNotificationDestinationEnabled stores the flag of the destination held by secret kind/name.
// The secret must exist (the flag's foreign key): ErrNotFound otherwise.
func (q Q) SetNotificationDestinationEnabled(ctx context.Context, node, kind, name string, enabled bool, now int64) error {
	res, err := q.ex.ExecContext(ctx, `INSERT INTO notification_destinations(node_id, secret_kind, secret_name, enabled, created_at, updated_at)
		SELECT s.node_id, s.kind, s.name, ?, ?, ? FROM secrets s WHERE s.node_id = ? AND s.kind = ? AND s.name = ?
		ON CONFLICT(node_id, secret_kind, secret_name) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at`,
		enabled, now, now, node, kind, name)
	return affectedOne(res, err, fmt.Sprintf("set destination %s/%s enabled=%t", kind, name, enabled))
}

// EnabledNotificationDestinations returns the names of node's enabled destinations held in
// secrets of kind.
func (q Q) EnabledNotificationDestinations(ctx context.Context, node, kind string) ([]string, error) {
	return q.queryStrings(ctx, "list enabled "+kind+" destinations", `SELECT s.name FROM secrets s
		LEFT JOIN notification_destinations d ON d.node_id = s.node_id AND d.secret_kind = s.kind AND d.secret_name = s.name
		WHERE s.node_id = ? AND s.kind = ? AND COALESCE(d.enabled, 1) = 1 ORDER BY s.name`,
		node, kind)
}

// NotificationQueueFilter selects queue rows for listing. Empty slices match everything. With
// After set, rows strictly older than it in (created_at DESC, id DESC) order are returned
// (keyset paging); otherwise Offset rows are skipped.
type NotificationQueueFilter struct {
	Node string // the node whose secrets the destination flags refer to
	// Kinds map channels to their secret kinds, to find each row's destination; a row of a
	// channel not listed reads as destination deleted.
	Kinds    []NotificationKind
	Statuses []string
	Channels []string
	After    *NotificationCursor
	Offset   int
	Limit    int
}

// NotificationCursor is a position in the (created_at DESC, id DESC) order.
type NotificationCursor struct {
	CreatedAt int64  `json:"created_at"`
	ID        string `json:"id"`
}

// NotificationQueueItem is a queue row with its job and the state of its destination.
type NotificationQueueItem struct {
	Notification
	JobID              string
	JobName            string
	DestinationDeleted bool
	DestinationEnabled bool
}

const (
	qNotificationQueueSelectHead = `SELECT n.id, n.run_id, n.channel, n.secret_name, n.status, n.attempts, n.next_attempt_at,
		n.lease_until, n.last_error, n.last_error_kind, n.sent_at, n.created_at, n.updated_at, n.event_kind, n.operation_id,
		COALESCE(r.job_id, ''), COALESCE(j.name, r.job_id, ''),
		s.name IS NULL, s.name IS NOT NULL AND COALESCE(d.enabled, 1) = 1
	FROM notifications n
	LEFT JOIN runs r ON r.id = n.run_id
	LEFT JOIN jobs j ON j.id = r.job_id
	LEFT JOIN secrets s ON s.node_id = ?
		AND s.kind = `
	qNotificationQueueSelectTail = ` AND s.name = n.secret_name
	LEFT JOIN notification_destinations d
		ON d.node_id = s.node_id AND d.secret_kind = s.kind AND d.secret_name = s.name`
)

// queueWhere is the WHERE clause (possibly empty) and arguments of a queue filter; the cursor
// condition is included when withCursor is set.
func queueWhere(f NotificationQueueFilter, withCursor bool) (string, []any) {
	var conds []string
	var args []any
	if len(f.Statuses) > 0 {
		conds = append(conds, "n.status IN ("+placeholders(len(f.Statuses))+")")
		for _, s := range f.Statuses {
			args = append(args, s)
		}
	}
	if len(f.Channels) > 0 {
		conds = append(conds, "n.channel IN ("+placeholders(len(f.Channels))+")")
		for _, c := range f.Channels {
			args = append(args, c)
		}
	}
	if withCursor && f.After != nil {
		// Written as a row-value comparison so that SQLite seeks the (created_at DESC, id DESC)
		// index to the cursor instead of filtering every newer row.
		conds = append(conds, "(n.created_at, n.id) < (?, ?)")
		args = append(args, f.After.CreatedAt, f.After.ID)
	}
	if len(conds) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func queueListQuery(f NotificationQueueFilter) (string, []any) {
	where, args := queueWhere(f, true)
	offset := f.Offset
	if f.After != nil {
		offset = 0
	}
	kindOf, kargs := kindCase("n.channel", f.Kinds, true)
	args = append(append([]any{f.Node}, kargs...), args...)
	return qNotificationQueueSelectHead + kindOf + qNotificationQueueSelectTail + where + " ORDER BY n.created_at DESC, n.id DESC LIMIT ? OFFSET ?",
		append(args, f.Limit, offset)
}

func queueCountQuery(f NotificationQueueFilter) (string, []any) {
	where, args := queueWhere(f, false)
	return "SELECT COUNT(*) FROM notifications n" + where, args
}

// ListNotificationQueue returns queue rows, newest first.
func (q Q) ListNotificationQueue(ctx context.Context, f NotificationQueueFilter) ([]NotificationQueueItem, error) {
	query, args := queueListQuery(f)
	rows, err := q.ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list notification queue: %w", err)
	}
	defer rows.Close()
	var out []NotificationQueueItem
	for rows.Next() {
		var it NotificationQueueItem
		n := &it.Notification
		if err := rows.Scan(&n.ID, &n.RunID, &n.Channel, &n.SecretName, &n.Status, &n.Attempts, &n.NextAttemptAt,
			&n.LeaseUntil, &n.LastError, &n.LastErrorKind, &n.SentAt, &n.CreatedAt, &n.UpdatedAt, &n.EventKind, &n.OperationID,
			&it.JobID, &it.JobName, &it.DestinationDeleted, &it.DestinationEnabled); err != nil {
			return nil, fmt.Errorf("list notification queue: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list notification queue: %w", err)
	}
	return out, nil
}

// CountNotificationQueue counts the rows ListNotificationQueue pages through.
func (q Q) CountNotificationQueue(ctx context.Context, f NotificationQueueFilter) (int64, error) {
	query, args := queueCountQuery(f)
	var n int64
	if err := q.ex.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count notification queue: %w", err)
	}
	return n, nil
}

// NotificationRun is what a notification needs to know about its run: the run row and its job's
// name ("" when the job is gone).
type NotificationRun struct {
	Run
	JobName string
}

// GetNotificationRun returns a run with its job's name, or ErrNotFound.
func (q Q) GetNotificationRun(ctx context.Context, runID string) (NotificationRun, error) {
	row := q.ex.QueryRowContext(ctx, `SELECT `+prefixColumns("r.", runColumns)+`, COALESCE(j.name, '')
		FROM runs r LEFT JOIN jobs j ON j.id = r.job_id WHERE r.id = ?`, runID)
	var nr NotificationRun
	r := &nr.Run
	err := row.Scan(&r.ID, &r.JobID, &r.Status, &r.StartedAt, &r.EndedAt, &r.SummaryJSON, &r.Error,
		&r.TargetSnapshotJSON, &r.ProgressJSON, &r.CancelRequestedAt, &r.CancelRequestedByUserID, &r.CancelReason, &nr.JobName)
	if err != nil {
		return NotificationRun{}, fmt.Errorf("get run %s for notification: %w", runID, notFound(err))
	}
	return nr, nil
}

func prefixColumns(prefix, cols string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = prefix + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}
