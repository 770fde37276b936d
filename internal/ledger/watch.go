package ledger

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

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// WatchEntry is the durable memory of one payment the guard approved and has
// not yet seen completed or settled, for the reconciler. It lives in storage
// at <prefix>/watch/<id>.json.
type WatchEntry struct {
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
	By *Approver `json:"by,omitempty"`
}

// WatchList is the write-behind buffer of the watch entries: approvals and
// completions change it in memory, and one goroutine per instance writes
// the changes to storage in batches, so the approve path never waits for a
// storage write. An approval whose entry is lost in a crash before its
// batch is written is not watched; the SDK's incomplete-payment flow still
// finds it.
type WatchList struct {
	mu      sync.Mutex
	pending map[string]*WatchEntry // nil: delete the entry
	written map[string]struct{}    // entries this instance wrote and did not delete
	wake    chan struct{}
	dropped int
	// stopped: the writer has stopped (its instance is shutting down);
	// changes made by requests still running are written at once.
	stopped bool
}

// ErrCorruptWatch: a watch entry could not be decoded; it is removed.
var ErrCorruptWatch = errors.New("corrupt watch entry")

const (
	// WatchFlushDelay collects a batch; approvals completed within it cost
	// no write.
	WatchFlushDelay = time.Second
	watchMaxPending = 100000
	watchMaxWritten = 100000
)

func NewWatchList() *WatchList {
	return &WatchList{pending: map[string]*WatchEntry{}, written: map[string]struct{}{}, wake: make(chan struct{}, 1)}
}

// Put queues e to be written; it reports whether the writer has stopped.
func (w *WatchList) Put(e *WatchEntry) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) >= watchMaxPending {
		w.dropped++ // storage is not keeping up; the incomplete flow remains
		return w.stopped
	}
	w.pending[e.PaymentID] = e
	return w.stopped
}

// Queued returns id's entry while it waits to be written, or nil.
func (w *WatchList) Queued(id string) *WatchEntry {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending[id]
}

// Remove queues the deletion of id's entry; it reports whether the writer
// has stopped.
func (w *WatchList) Remove(id string) bool {
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

// Wake is signalled when a change is queued (see Notify).
func (w *WatchList) Wake() <-chan struct{} { return w.wake }

// Notify wakes the writer waiting on Wake, if it is not awake already.
func (w *WatchList) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Stop marks the writer stopped: Put and Remove then report it, and the
// caller writes its change itself.
func (w *WatchList) Stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// Take returns the pending changes and how many approvals were dropped
// since the last call.
func (w *WatchList) Take() (map[string]*WatchEntry, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	batch, dropped := w.pending, w.dropped
	w.pending, w.dropped = map[string]*WatchEntry{}, 0
	return batch, dropped
}

// Wrote records that id's entry was written (exists) or deleted.
func (w *WatchList) Wrote(id string, exists bool) {
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

func (st *Ledger) watchKey(id string) string { return path.Join(st.prefix, "watch", id+".json") }

// SaveWatch writes e to the durable watch list.
func (st *Ledger) SaveWatch(ctx context.Context, e *WatchEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return st.s.Store(ctx, st.watchKey(e.PaymentID), data)
}

// DeleteWatch removes id from the durable watch list.
func (st *Ledger) DeleteWatch(ctx context.Context, id string) error {
	if err := st.s.Delete(ctx, st.watchKey(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// LoadWatch returns the watch entry of id, or nil when there is none.
func (st *Ledger) LoadWatch(ctx context.Context, id string) (*WatchEntry, error) {
	data, err := st.s.Load(ctx, st.watchKey(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e WatchEntry
	if err := json.Unmarshal(data, &e); err != nil || e.PaymentID != id {
		return nil, fmt.Errorf("%w: payment %s", ErrCorruptWatch, id)
	}
	return &e, nil
}

// Watched lists the payments in the durable watch list.
func (st *Ledger) Watched(ctx context.Context) ([]string, error) {
	dir := path.Join(st.prefix, "watch")
	keys, err := st.s.List(ctx, dir, false)
	if errors.Is(err, fs.ErrNotExist) && !st.s.Exists(ctx, dir) {
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

// Approver is what the guard remembers of the request that approved a
// payment: digests of its credentials, the host it was sent to and whether
// it posted a form, so that a completion by someone else is recorded and
// delivered in the shape the app takes.
type Approver struct {
	Payer []string `json:"payer,omitempty"`
	// Before, when the app's answer to the approve set new cookies, is the
	// approving request's own credential: the browser keeps sending it when
	// that answer never reached it (a dropped connection). Either counts.
	Before []string `json:"before,omitempty"`
	Host   string   `json:"host,omitempty"`
	Form   bool     `json:"form,omitempty"`
}

// RequestOnly is the approver as the approving request alone tells it:
// when the app's answer (and its cookies) never reached the client.
func (a *Approver) RequestOnly() *Approver {
	if len(a.Before) == 0 {
		return a
	}
	return &Approver{Payer: a.Before, Host: a.Host, Form: a.Form}
}
