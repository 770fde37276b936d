package piguard

import (
	"context"
	"fmt"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"go.uber.org/zap"
)

// Retention of delivered records.
const (
	// DefaultRetention is how long a delivered payment's record is kept: long
	// enough to answer replays (the Pi SDK retries a completion within
	// minutes; onIncompletePaymentFound can come back days later) and to
	// audit what the guard forwarded.
	DefaultRetention = ledger.DefaultRetention
)

// retention is the configured retention, or the default.
func (h *Handler) retention() time.Duration {
	if h.Retention > 0 {
		return time.Duration(h.Retention)
	}
	return DefaultRetention
}

// validateRetention refuses a negative retention.
func (h *Handler) validateRetention() error {
	if h.Retention < 0 {
		return fmt.Errorf("pi_guard: retention must be positive, such as 720h, got %s", time.Duration(h.Retention))
	}
	return nil
}

// retentionLoop removes expired delivered records in the background, one
// pass per interval, until ctx (the module's context) is done. Several
// instances sharing storage may sweep at once: removing a record twice is
// harmless.
func (h *Handler) retentionLoop(ctx context.Context) {
	sw := ledger.NewSweeper(h.store, h.retention())
	defer sw.Close()
	t := time.NewTicker(sw.Interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := sw.ExpiryFailed(time.Now()); err != nil {
			h.logger.Warn("could not write the expiry log of delivered records; the retention sweep walks payments/ every quarter of retention instead, "+
				"which costs more, until the log has worked for a retention; check the disk under Caddy's storage", zap.Error(err))
		}
		removed, err := sw.Pass(ctx, time.Now().Add(-h.retention()))
		if err != nil && ctx.Err() == nil {
			h.logger.Warn("could not sweep expired payment records; retrying next pass", zap.Error(err))
		}
		if removed > 0 {
			h.logger.Info("removed expired payment records", zap.Int("records", removed), zap.Int("listed", sw.LastListed()), zap.Int("walked", sw.LastWalked()), zap.Duration("retention", h.retention()))
		}
	}
}
