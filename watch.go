package piguard

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// watch remembers a payment the guard approved, and its approver, for the
// reconciler. It is called once per payment, when the guard approves it:
// a later approve never moves the entry's times.
func (h *Handler) watch(p *piclient.Payment, who *ledger.Approver) {
	if h.watched == nil || p == nil {
		return
	}
	now := time.Now().UTC()
	h.afterWatchChange(h.watched.Put(&ledger.WatchEntry{
		PaymentID: p.Identifier, Amount: p.Amount, UserUID: p.UserUID,
		Approved: now, NextCheck: now.Add(time.Duration(h.ReconcileAfter)), By: who,
	}))
}

// unwatch forgets a payment that completed or was settled.
func (h *Handler) unwatch(id string) {
	if h.watched != nil {
		h.afterWatchChange(h.watched.Remove(id))
	}
}

// afterWatchChange wakes the writer, or, once it has stopped, writes the
// change itself in the background.
func (h *Handler) afterWatchChange(stopped bool) {
	if !stopped {
		h.watched.Notify()
		return
	}
	h.background.Add(1)
	go func() {
		defer h.background.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(h.Timeout))
		defer cancel()
		h.flushWatch(ctx)
	}()
}

// watchFlushLoop writes the watch list's changes to storage in batches until
// ctx is done, then writes what is left.
func (h *Handler) watchFlushLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			h.watched.Stop()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
			h.flushWatch(fctx)
			cancel()
			return
		case <-h.watched.Wake():
		}
		select {
		case <-ctx.Done():
		case <-time.After(ledger.WatchFlushDelay):
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
		h.flushWatch(fctx)
		cancel()
	}
}

// flushWatch writes one batch of watch-list changes.
func (h *Handler) flushWatch(ctx context.Context) {
	batch, dropped := h.watched.Take()
	if dropped > 0 {
		h.logger.Warn("too many approvals waiting to be written to the watch list; some are not watched (the SDK's incomplete flow still finds them)",
			zap.Int("dropped", dropped))
	}
	for id, e := range batch {
		var err error
		if e == nil {
			err = h.store.DeleteWatch(ctx, id)
		} else {
			err = h.store.SaveWatch(ctx, e)
		}
		if err != nil {
			h.logger.Warn("could not update the watch list of approved payments", zap.String("payment_id", id), zap.Error(err))
			continue
		}
		if e != nil && h.completedElsewhere(ctx, id) {
			continue
		}
		h.watched.Wrote(id, e != nil)
	}
}

// completedElsewhere removes the watch entry just written for id when the
// payment already has a completed record: another instance completed it
// within the second this entry waited, and removed an entry that was not
// there yet. (Completions save their record before they remove the entry,
// so one of the two always sees the other.) It reports whether it removed
// the entry.
func (h *Handler) completedElsewhere(ctx context.Context, id string) bool {
	rec, err := h.store.Load(ctx, id)
	if err != nil || !rec.Completed() || rec.Unsaved {
		return false
	}
	if err := h.store.DeleteWatch(ctx, id); err != nil {
		return false // the reconciler removes it when it checks it
	}
	h.watched.Wrote(id, false)
	return true
}
