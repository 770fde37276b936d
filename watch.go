package piguard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// watchEntry is the durable memory of one payment the guard approved and has
// not yet seen completed or settled, for the reconciler. It lives in storage
// at <prefix>/watch/<id>.json.
type watchEntry struct {
	PaymentID string          `json:"payment_id"`
	Amount    piclient.Amount `json:"amount,omitempty"`
	UserUID   string          `json:"user_uid,omitempty"`
	Approved  time.Time       `json:"approved"`
	// NextCheck is when the reconciler reads the payment from Pi next.
	NextCheck time.Time `json:"next_check"`
	// Checks counts the reconciler's reads that left the payment watched.
	Checks int `json:"checks,omitempty"`
	// LastSeen is what the last check found (no_transaction, unverified,
	// paid_not_completed, pi_unavailable, notice_failed, ...).
	LastSeen  string `json:"last_seen,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Notices counts the notices the app did not accept.
	Notices int `json:"notices,omitempty"`
	// CancelledByGuard: the reconciler cancelled the payment at Pi
	// (reconcile_cancel) and still owes the app its notice.
	CancelledByGuard bool `json:"cancelled_by_guard,omitempty"`
	// By is what identifies the approver, the payer (see PayerBinding).
	By *approver `json:"by,omitempty"`
}

// approver returns what the entry remembers of the payment's approver.
func (e *watchEntry) approver() *approver { return e.By }

// watchList is the write-behind buffer of the watch entries: approvals and
// completions change it in memory, and one goroutine per instance writes
// the changes to storage in batches, so the approve path never waits for a
// storage write. An approval whose entry is lost in a crash before its
// batch is written is not watched; the SDK's incomplete-payment flow still
// finds it.
type watchList struct {
	mu      sync.Mutex
	pending map[string]*watchEntry // nil: delete the entry
	written map[string]struct{}    // entries this instance wrote and did not delete
	wake    chan struct{}
	dropped int
	// stopped: the writer has stopped (its instance is shutting down);
	// changes made by requests still running are written at once.
	stopped bool
}

// errCorruptWatch: a watch entry could not be decoded; it is removed.
var errCorruptWatch = errors.New("corrupt watch entry")

const (
	watchFlushDelay = time.Second // collects a batch; approvals completed within it cost no write
	watchMaxPending = 100000
	watchMaxWritten = 100000
)

func newWatchList() *watchList {
	return &watchList{pending: map[string]*watchEntry{}, written: map[string]struct{}{}, wake: make(chan struct{}, 1)}
}

// watch remembers a payment the guard approved, and its approver, for the
// reconciler. It is called once per payment, when the guard approves it:
// a later approve never moves the entry's times.
func (h *Handler) watch(p *piclient.Payment, who *approver) {
	if h.watched == nil || p == nil {
		return
	}
	now := time.Now().UTC()
	h.afterWatchChange(h.watched.put(&watchEntry{
		PaymentID: p.Identifier, Amount: p.Amount, UserUID: p.UserUID,
		Approved: now, NextCheck: now.Add(time.Duration(h.ReconcileAfter)), By: who,
	}))
}

// unwatch forgets a payment that completed or was settled.
func (h *Handler) unwatch(id string) {
	if h.watched != nil {
		h.afterWatchChange(h.watched.remove(id))
	}
}

// afterWatchChange wakes the writer, or, once it has stopped, writes the
// change itself in the background.
func (h *Handler) afterWatchChange(stopped bool) {
	if !stopped {
		select {
		case h.watched.wake <- struct{}{}:
		default:
		}
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

// put queues e to be written; it reports whether the writer has stopped.
func (w *watchList) put(e *watchEntry) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) >= watchMaxPending {
		w.dropped++ // storage is not keeping up; the incomplete flow remains
		return w.stopped
	}
	w.pending[e.PaymentID] = e
	return w.stopped
}

// queued returns id's entry while it waits to be written, or nil.
func (w *watchList) queued(id string) *watchEntry {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending[id]
}

// remove queues the deletion of id's entry; it reports whether the writer
// has stopped.
func (w *watchList) remove(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, wrote := w.written[id]
	if e, queued := w.pending[id]; queued && e != nil && !wrote {
		delete(w.pending, id) // never written: nothing to delete
		return false
	}
	w.pending[id] = nil
	return w.stopped
}

func (w *watchList) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// take returns the pending changes and how many approvals were dropped
// since the last call.
func (w *watchList) take() (map[string]*watchEntry, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	batch, dropped := w.pending, w.dropped
	w.pending, w.dropped = map[string]*watchEntry{}, 0
	return batch, dropped
}

func (w *watchList) wrote(id string, exists bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !exists {
		delete(w.written, id)
		return
	}
	if len(w.written) >= watchMaxWritten {
		clear(w.written) // only an optimisation: removals then always delete
	}
	w.written[id] = struct{}{}
}

// watchFlushLoop writes the watch list's changes to storage in batches until
// ctx is done, then writes what is left.
func (h *Handler) watchFlushLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			h.watched.stop()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
			h.flushWatch(fctx)
			cancel()
			return
		case <-h.watched.wake:
		}
		select {
		case <-ctx.Done():
		case <-time.After(watchFlushDelay):
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
		h.flushWatch(fctx)
		cancel()
	}
}

// flushWatch writes one batch of watch-list changes.
func (h *Handler) flushWatch(ctx context.Context) {
	batch, dropped := h.watched.take()
	if dropped > 0 {
		h.logger.Warn("too many approvals waiting to be written to the watch list; some are not watched (the SDK's incomplete flow still finds them)",
			zap.Int("dropped", dropped))
	}
	for id, e := range batch {
		var err error
		if e == nil {
			err = h.deleteWatch(ctx, id)
		} else {
			err = h.saveWatch(ctx, e)
		}
		if err != nil {
			h.logger.Warn("could not update the watch list of approved payments", zap.String("payment_id", id), zap.Error(err))
			continue
		}
		h.watched.wrote(id, e != nil)
	}
}

func (h *Handler) watchKey(id string) string { return path.Join(h.store.prefix, "watch", id+".json") }

func (h *Handler) saveWatch(ctx context.Context, e *watchEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return h.store.s.Store(ctx, h.watchKey(e.PaymentID), data)
}

func (h *Handler) deleteWatch(ctx context.Context, id string) error {
	if err := h.store.s.Delete(ctx, h.watchKey(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// loadWatch returns the watch entry of id, or nil when there is none.
func (h *Handler) loadWatch(ctx context.Context, id string) (*watchEntry, error) {
	data, err := h.store.s.Load(ctx, h.watchKey(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e watchEntry
	if err := json.Unmarshal(data, &e); err != nil || e.PaymentID != id {
		return nil, fmt.Errorf("%w: payment %s", errCorruptWatch, id)
	}
	return &e, nil
}

// watchedIDs lists the payments in the durable watch list.
func (h *Handler) watchedIDs(ctx context.Context) ([]string, error) {
	dir := path.Join(h.store.prefix, "watch")
	keys, err := h.store.s.List(ctx, dir, false)
	if errors.Is(err, fs.ErrNotExist) && !h.store.s.Exists(ctx, dir) {
		return nil, nil // nothing was ever watched
	}
	if err != nil {
		// Also an entry deleted while the directory was read: not "empty".
		return nil, err
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		if id, ok := strings.CutSuffix(path.Base(k), ".json"); ok && piclient.ValidatePaymentID(id) == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
