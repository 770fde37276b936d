package piguard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// Redelivery defaults.
const (
	DefaultRedeliverAttempts = 10
	DefaultRedeliverBackoff  = 5 * time.Second
	maxRedeliverBackoff      = 15 * time.Minute
	// redeliverConcurrency bounds the deliveries one worker runs at a time.
	redeliverConcurrency = 4
)

// redeliverLoop keeps the owed-deliveries gauge current, writes records
// that could not be written before and, with redeliver_to set, re-sends owed
// deliveries to the app, until ctx (the module's context, cancelled when the
// config is unloaded) is done. Its first pass runs at once, so the gauge is
// right from the start. Several instances may run it over one storage: a
// record is sent only under its lock.
func (h *Handler) redeliverLoop(ctx context.Context) {
	w := newRedeliverer(h)
	defer w.running.Wait()
	interval := min(max(time.Duration(h.RedeliverBackoff)/2, 10*time.Millisecond), 5*time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// redeliverer runs the deliveries of one worker, at most
// redeliverConcurrency at a time.
type redeliverer struct {
	h       *Handler
	slots   chan struct{}
	running sync.WaitGroup
	// stuck is the payment whose storage call ran out of time in the last
	// pass that ended early: the next pass starts after it, so that one
	// record storage never answers for holds up only itself. stuckUnsaved
	// is the same for the records kept in memory.
	stuck, stuckUnsaved string
}

// pass makes one pass over the owed deliveries: it writes unsaved records,
// counts owed ones by state and starts those that are due. A payment whose
// lock is busy (a request or a delivery is at it) is left for a later pass.
func (w *redeliverer) pass(ctx context.Context) {
	h := w.h
	// Not bounded by the timeout: a replay cut short starts again from the
	// top, and one that takes longer than the timeout (a large segment
	// full of owed records to sync) would never reach its end. It is local
	// disk work; its locks are held only by live requests on this machine.
	n, err := h.store.Recover(ctx)
	if err != nil {
		h.logger.Warn("could not replay the journal of an instance that stopped; retrying next pass", zap.Error(err))
	} else if n > 0 {
		h.logger.Warn("restored the records of completed payments that a stopped instance had journalled but not yet written durably; they are owed and will be delivered again",
			zap.Int("records", n))
	}
	if err := h.store.JournalFailure(); err != nil {
		h.logger.Warn("the journal of new payment records failed and is off until Caddy restarts: each completion's record is now synced on its own, "+
			"as durable but slower; check the disk under Caddy's storage", zap.Error(err))
	}
	w.stuckUnsaved = h.persistUnsaved(ctx, w.stuckUnsaved)
	octx, cancel := h.storageContext(ctx)
	ids, err := h.store.Owed(octx) // on an error, still those in memory
	cancel()
	if err != nil {
		h.logger.Warn("could not list owed deliveries", zap.Error(err))
	}
	counts := map[string]float64{ledger.Pending: 0, ledger.Exhausted: 0}
	now := time.Now()
	for _, id := range startAfter(ids, w.stuck) {
		if ctx.Err() != nil {
			return
		}
		sctx, cancel := h.storageContext(ctx)
		rec, lerr := h.store.Load(sctx, id)
		stop := stalled(ctx, sctx)
		cancel()
		if stop {
			h.logger.Warn("storage did not answer within the timeout; this redelivery pass ends here, the next one tries again",
				zap.String("payment_id", id), zap.Error(lerr))
			w.stuck = id
			return
		}
		if lerr != nil || rec == nil {
			continue
		}
		if !rec.Owed() {
			if h.clearSettled(ctx, id) {
				w.stuck = id
				return
			}
			continue
		}
		counts[rec.Delivery.State]++
		if h.redeliverURL != nil && rec.Delivery.State == ledger.Pending && !now.Before(rec.Delivery.NextAttempt) {
			w.start(ctx, id)
		}
	}
	w.stuck = ""
	if err == nil {
		for state, n := range counts {
			h.metrics.owed.WithLabelValues(h.app, state).Set(n)
		}
	}
}

// newRedeliverer returns a redelivery worker for h; its passes remember
// where the last one stalled.
func newRedeliverer(h *Handler) *redeliverer {
	return &redeliverer{h: h, slots: make(chan struct{}, redeliverConcurrency)}
}

// start redelivers id in the background if its in-process lock is free and
// a slot is.
func (w *redeliverer) start(ctx context.Context, id string) {
	unlock, ok := w.h.locks.TryLock(id)
	if !ok {
		return
	}
	select {
	case w.slots <- struct{}{}:
	default:
		unlock() // every slot is busy
		return
	}
	w.running.Add(1)
	go func() {
		defer w.running.Done()
		defer func() { <-w.slots }()
		defer unlock()
		w.h.redeliver(ctx, id)
	}()
}

// startAfter sorts ids in place and returns them beginning after stuck (at
// the first when stuck is empty) and ending with it.
func startAfter(ids []string, stuck string) []string {
	slices.Sort(ids)
	if stuck == "" {
		return ids
	}
	i, found := slices.BinarySearch(ids, stuck)
	if found {
		i++
	}
	return append(ids[i:len(ids):len(ids)], ids[:i]...)
}

// storageContext bounds one storage read or write of the background work
// (the redelivery worker, the reconciler) by the timeout. Their context is
// the module's, which lasts as long as the config: without a bound, a
// storage module whose server stops answering (and has no timeout of its
// own) would stop redelivery for good, where the next pass could have tried
// again. A lock taken on it lives only as long, so only work bounded by the
// same timeout is done under such a lock.
func (h *Handler) storageContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Duration(h.Timeout))
}

// stalled reports whether the storage call bounded by sctx (from
// storageContext(ctx)) ran out of time while ctx is live: storage stopped
// answering, and every further call of a pass would wait as long, so the
// pass ends and the next one tries again. It reads sctx, not the call's
// error, which not every storage module wraps.
func stalled(ctx, sctx context.Context) bool {
	return sctx.Err() != nil && ctx.Err() == nil
}

// clearSettled removes the owed copy of a payment the app accepted: left
// behind when a crash, or a write racing the one that settled it, came
// between writing the settled record and deleting the owed one. It reports
// whether storage stalled.
func (h *Handler) clearSettled(ctx context.Context, id string) bool {
	unlockLocal, ok := h.locks.TryLock(id)
	if !ok {
		return false
	}
	defer unlockLocal()
	sctx, cancel := h.storageContext(ctx)
	defer cancel()
	if !h.store.OwedWritten(sctx, id) {
		// The listing is older than the delivery that removed it: no lock,
		// which on networked storage a client's retry would wait for.
		return stalled(ctx, sctx)
	}
	unlock, ok := h.store.TryLock(sctx, id, 100*time.Millisecond)
	if !ok {
		return stalled(ctx, sctx)
	}
	defer unlock()
	if rec, err := h.store.Load(sctx, id); err == nil && rec != nil && !rec.Owed() && !rec.Unsaved {
		if err := h.store.ClearOwed(sctx, id); err != nil {
			h.logger.Warn("could not remove the owed copy of a delivered payment", zap.String("payment_id", id), zap.Error(err))
		}
	}
	return stalled(ctx, sctx)
}

// persistUnsaved tries again to write the records this process keeps in
// memory because their write failed, in order, beginning after after (the
// one it stalled at last time). All of them together get one timeout (a
// storage that does not answer a try-lock is not told from a busy lock, so
// a bound per record would wait as long for each); those left over wait for
// a later pass. It returns the record it stalled at, or "". A stall does
// not end the pass: the owed deliveries written before may still be sent.
func (h *Handler) persistUnsaved(ctx context.Context, after string) string {
	unsaved := h.store.Unsaved()
	if len(unsaved) == 0 {
		return ""
	}
	sctx, cancel := h.storageContext(ctx)
	defer cancel()
	for _, id := range startAfter(slices.Collect(maps.Keys(unsaved)), after) {
		if ctx.Err() != nil {
			return ""
		}
		if unlockLocal, ok := h.locks.TryLock(id); ok {
			h.persistUnsavedOne(sctx, id, unlockLocal)
		}
		if stalled(ctx, sctx) {
			h.logger.Warn("storage did not answer within the timeout; records it refused before stay in memory until a later pass",
				zap.String("payment_id", id))
			return id
		}
	}
	return ""
}

// persistUnsavedOne writes the unsaved record of id, whose in-process lock
// the caller took and this releases.
func (h *Handler) persistUnsavedOne(ctx context.Context, id string, unlockLocal func()) {
	defer unlockLocal()
	unlock, ok := h.store.TryLock(ctx, id, 100*time.Millisecond)
	if !ok {
		return
	}
	defer unlock()
	rec, err := h.store.Load(ctx, id)
	if err != nil || rec == nil || !rec.Unsaved {
		return
	}
	if err := h.store.Save(ctx, rec); err != nil {
		return
	}
	h.unwatch(id) // durable now: the reconciler need not keep it
	h.logger.Info("wrote the record of a completed payment that storage had refused before",
		zap.String("payment_id", id), zap.String("state", rec.Delivery.State))
}

// redeliver sends one owed delivery if it is still due and no other
// instance holds it. The caller holds the payment's in-process lock.
func (h *Handler) redeliver(ctx context.Context, id string) {
	lctx, cancel := h.storageContext(ctx)
	rec, err := h.store.Load(lctx, id)
	cancel()
	if err != nil || rec == nil {
		return
	}
	if !rec.Unsaved {
		// A record only this process knows needs no cross-instance lock:
		// another instance can at most deliver the payment once more.
		unlock, ok := h.store.TryLock(ctx, id, time.Second)
		if !ok {
			return // another instance is working on it
		}
		defer unlock()
		lctx, cancel := h.storageContext(ctx)
		rec, err = h.store.Load(lctx, id)
		cancel()
		if err != nil || rec == nil {
			return
		}
	}
	if !rec.Completed() || rec.Delivery.State != ledger.Pending || time.Now().Before(rec.Delivery.NextAttempt) {
		return
	}
	status, sendErr := h.send(ctx, rec)
	accepted := sendErr == nil && is2xx(status)
	why := ""
	switch {
	case sendErr != nil:
		why = "the app could not be reached: " + sendErr.Error()
	case !accepted:
		why = fmt.Sprintf("the app answered HTTP %d", status)
	}
	result := "failed"
	if accepted {
		result = "delivered"
	}
	h.metrics.redeliveries.WithLabelValues(result).Inc()
	h.recordDelivery(ctx, rec, accepted, why, true)
	if accepted {
		h.logger.Info("payment redelivered", zap.String("payment_id", id), zap.Int("failed_attempts", rec.Delivery.Attempts))
	} else if rec.Delivery.State != ledger.Exhausted {
		h.logRefusedDelivery(rec, why, "redelivery")
	}
}

// send re-sends the stored request to redeliver_to with a fresh verified
// header bound to it, and returns the app's status. It takes at most
// timeout. Only the kept headers are sent: never cookies, authorization or
// X-Forwarded-*, and never a query string.
func (h *Handler) send(ctx context.Context, rec *ledger.Record) (int, error) {
	sr := deliverable(rec, h.CompletePath)
	phase := h.phaseOf(sr.Path)
	if phase == "" {
		phase = phaseComplete
	}
	token, err := h.signer.Sign(verify.KindVerified, phase, rec.Payment, verify.Binding{Method: sr.Method, Path: sr.Path, Body: sr.Body}, "")
	if err != nil {
		return 0, err
	}
	target := *h.redeliverURL
	target.Path, target.RawPath, target.RawQuery = sr.Path, "", ""
	actx, cancel := context.WithTimeout(ctx, time.Duration(h.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(actx, sr.Method, target.String(), bytes.NewReader(sr.Body))
	if err != nil {
		return 0, err
	}
	req.Header = keptHeader(sr)
	req.Host = sr.Host
	req.Header.Set(h.Header, token)
	resp, err := h.redeliverClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}

// parseRedeliverURL checks redeliver_to: the app's scheme and address, as
// reverse_proxy reaches it. It has no path: a redelivery goes to the path
// the token binds, exactly as the live request did.
func parseRedeliverURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("redeliver_to is not a URL: it must be the app's base URL, such as http://127.0.0.1:3000")
	}
	shown := u.Redacted() // never echo a password given in the URL
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("redeliver_to %q must be the app's base URL, such as http://127.0.0.1:3000 (no user, query or fragment)", shown)
	}
	if strings.TrimRight(u.Path, "/") != "" {
		return nil, fmt.Errorf("redeliver_to %q must have no path: the guard redelivers to the path it forwarded (and bound in the token), as reverse_proxy does; use http://%s", shown, u.Host)
	}
	u.Path, u.RawPath = "", ""
	return u, nil
}
