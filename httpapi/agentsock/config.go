package agentsock

import (
	"context"
	"fmt"
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
	sec, err := h.cfg.Snapshots.Secrets(ctx, agentID)
	if err != nil || sec == nil {
		return err
	}
	return c.send(sec)
}

func (h *Hub) pushConfig(ctx context.Context, agentID string, c *conn) (string, error) {
	if h.cfg.Snapshots == nil {
		return "", fmt.Errorf("config snapshots are not available")
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
	c.cfgMu.Lock()
	if c.cfgMarker == snap.SnapshotID {
		c.cfgMu.Unlock()
		return SyncUnchanged, nil
	}
	prev := c.cfgMarker
	c.cfgMarker = snap.SnapshotID
	c.cfgMu.Unlock()
	if err := c.send(snap); err != nil {
		c.cfgMu.Lock()
		if c.cfgMarker == snap.SnapshotID {
			c.cfgMarker = prev
		}
		c.cfgMu.Unlock()
		if rerr := h.db.Writer().SetConfigSyncError(ctx, agentID, "send_failed", err.Error(), now); rerr != nil {
			c.log.Warn().Err(rerr).Msg("record config sync error")
		}
		return "", fmt.Errorf("send config snapshot: %w", err)
	}
	return SyncSent, nil
}
