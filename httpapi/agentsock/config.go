package agentsock

import (
	"context"
	"fmt"

	"github.com/bastion-backup/bastion/agent/protocol"
)

// Config sync outcomes.
const (
	SyncSent           = "sent"
	SyncUnchanged      = "unchanged"
	SyncPendingOffline = "pending_offline"
)

// SyncConfig records the agent's desired config snapshot and sends it if the agent is connected
// and has not already been sent that snapshot on this connection.
func (h *Hub) SyncConfig(ctx context.Context, agentID string) (string, error) {
	return h.pushConfig(ctx, agentID, h.current(agentID))
}

// PushSecrets sends a fresh secrets snapshot to a connected agent (after a secret changes).
func (h *Hub) PushSecrets(ctx context.Context, agentID string) error {
	c := h.current(agentID)
	if c == nil || h.cfg.Snapshots == nil {
		return nil
	}
	return h.sendSecrets(ctx, c, false)
}

// sendSecrets builds the agent's secrets snapshot and queues it, under c.secMu. With wait it
// waits for room in the outbox, as sendWait does, but never while holding the lock: a slow agent
// must not stall the others that send it snapshots (the reader answering its hello among them).
func (h *Hub) sendSecrets(ctx context.Context, c *conn, wait bool) error {
	for {
		queued, err := h.trySendSecrets(ctx, c)
		if err != nil || queued {
			return err
		}
		if !wait {
			c.cancel(errOutboxFull)
			return errOutboxFull
		}
		select {
		case <-c.out.space:
		case <-c.ctx.Done():
			return errNotConnected
		}
	}
}

// trySendSecrets builds and queues the snapshot if the outbox has room, and says whether it did.
func (h *Hub) trySendSecrets(ctx context.Context, c *conn) (bool, error) {
	c.secMu.Lock()
	defer c.secMu.Unlock()
	sec, err := h.cfg.Snapshots.Secrets(ctx, c.agentID)
	if err != nil {
		return false, fmt.Errorf("build secrets snapshot: %w", err)
	}
	if sec == nil {
		return true, nil
	}
	b, err := protocol.Encode(sec)
	if err != nil {
		return false, err
	}
	if c.ctx.Err() != nil {
		return false, errNotConnected
	}
	return c.out.push(b), nil
}

func (h *Hub) pushConfig(ctx context.Context, agentID string, c *conn) (string, error) {
	if h.cfg.Snapshots == nil {
		return "", fmt.Errorf("config snapshots are not available")
	}
	if c != nil {
		c.cfgMu.Lock()
		defer c.cfgMu.Unlock()
	}
	snap, err := h.cfg.Snapshots.Config(ctx, agentID)
	if err != nil {
		return "", err
	}
	now := h.clock.Now().Unix()
	if err := h.db.Writer().SetDesiredConfig(ctx, agentID, snap.SnapshotID, now); err != nil {
		return "", err
	}
	if c == nil {
		return SyncPendingOffline, nil
	}
	if c.cfgMarker == snap.SnapshotID {
		return SyncUnchanged, nil
	}
	if err := c.send(snap); err != nil {
		if rerr := h.db.Writer().SetConfigSyncError(ctx, agentID, "send_failed", err.Error(), now); rerr != nil {
			c.log.Warn().Err(rerr).Msg("record config sync error")
		}
		return "", fmt.Errorf("send config snapshot: %w", err)
	}
	c.cfgMarker = snap.SnapshotID
	return SyncSent, nil
}
