package piguard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// Reconciler defaults. The wallet's payment flow gives up after about 60 s,
// so a payment approved five minutes ago and still not completed has lost
// its client.
const (
	DefaultReconcileAfter  = 5 * time.Minute
	DefaultReconcileGiveUp = time.Hour
	maxReconcileBackoff    = 15 * time.Minute
	walletTimeout          = time.Minute // about how long the Pi wallet's payment flow lasts
	phaseReconcile         = verify.PhaseReconcile
)

// Outcomes of the reconciler: the outcome label of
// caddy_pi_guard_reconciled_total and of its log lines. Each is final: the
// payment is no longer watched.
const (
	// reconciledCompleted: Pi showed a verified transaction; the guard
	// completed the payment at Pi and queued its delivery to the app.
	reconciledCompleted = "completed"
	// reconciledAlreadyCompleted: Pi showed the payment completed but the
	// guard had no record of it; its delivery was queued.
	reconciledAlreadyCompleted = "already_completed"
	// reconciledByClient: a client completed the payment meanwhile.
	reconciledByClient = "client_completed"
	// reconciledCancelled: Pi showed the payment cancelled; the app was told.
	reconciledCancelled = "cancelled"
	// reconciledCancelledByGuard: no transaction by reconcile_give_up; the
	// guard cancelled it at Pi (reconcile_cancel) and told the app.
	reconciledCancelledByGuard = "cancelled_by_guard"
	// reconciledGaveUp: no verified transaction by reconcile_give_up; the
	// app was told, the payment left as it is at Pi.
	reconciledGaveUp = "gave_up"
	// reconciledUndeliverable: Pi showed a verified transaction, but without
	// redeliver_to the guard cannot deliver it, so it did not complete it.
	reconciledUndeliverable = "undeliverable"
	// reconciledRefused: the guard's checks (cross-check, amount limits)
	// refused to complete it, or Pi kept refusing; an operator must look.
	reconciledRefused = "refused"
	// reconciledNotFound: Pi no longer knows the payment.
	reconciledNotFound = "not_found"
	// reconciledNoticeFailed: the app never accepted the notice.
	reconciledNoticeFailed = "notice_failed"
)

// startReconciler starts the watch list's writer and the reconciler; both
// stop with ctx (the module's context).
func (h *Handler) startReconciler(ctx context.Context) {
	if time.Duration(h.ReconcileAfter) < walletTimeout {
		h.logger.Warn("reconcile_after is shorter than the wallet's payment flow: the guard may complete payments whose clients are still on their way (they then get a replay)",
			zap.Duration("reconcile_after", time.Duration(h.ReconcileAfter)), zap.Duration("wallet_flow", walletTimeout))
	}
	go h.watchFlushLoop(ctx)
	go h.reconcileLoop(ctx)
}

// setReconcileDefaults fills in the reconciler's defaults.
func (h *Handler) setReconcileDefaults() {
	if h.ReconcileAfter == 0 {
		h.ReconcileAfter = caddy.Duration(DefaultReconcileAfter)
	}
	if h.ReconcileGiveUp == 0 {
		h.ReconcileGiveUp = caddy.Duration(DefaultReconcileGiveUp)
	}
}

// validateReconcile checks the reconciler's options.
func (h *Handler) validateReconcile() error {
	if h.ReconcileAfter < 0 || h.ReconcileGiveUp < 0 {
		return errors.New("pi_guard: reconcile_after and reconcile_give_up must not be negative")
	}
	if h.ReconcileCancel && h.RedeliverTo == "" {
		// The reconciler cancels a given-up payment only when it can tell
		// the app (a cancel notice at redeliver_to): without it, the option
		// would pass validation and never do anything.
		return errors.New("pi_guard: reconcile_cancel needs redeliver_to: the guard cancels a given-up payment at Pi only when it can send the app a cancel notice; " +
			"set redeliver_to to the app's base URL (e.g. redeliver_to http://127.0.0.1:3000), or remove reconcile_cancel")
	}
	if h.ReconcileGiveUp <= h.ReconcileAfter {
		return fmt.Errorf("pi_guard: reconcile_give_up (%s) must be longer than reconcile_after (%s): the reconciler gives up on a payment only after it has looked at it",
			time.Duration(h.ReconcileGiveUp), time.Duration(h.ReconcileAfter))
	}
	return nil
}

// reconcileLoop makes a reconciliation pass every quarter of reconcile_after
// (at most every 30 s) until ctx is done.
func (h *Handler) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(min(max(time.Duration(h.ReconcileAfter)/4, 20*time.Millisecond), 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.reconcileOnce(ctx)
		}
	}
}

// reconcileOnce keeps the watched gauge current and, on the one instance
// that holds the reconciler's storage lock, checks the watched payments
// that are due.
func (h *Handler) reconcileOnce(ctx context.Context) {
	wctx, cancel := h.storageContext(ctx)
	ids, err := h.store.Watched(wctx)
	cancel()
	if err != nil {
		h.logger.Debug("could not list the watched payments", zap.Error(err))
		return
	}
	h.metrics.watched.WithLabelValues(h.app).Set(float64(len(ids)))
	if len(ids) == 0 {
		return
	}
	unlock, ok := h.store.TryLockReconciler(ctx)
	if !ok {
		return // another instance reconciles
	}
	defer unlock()
	h.checks.forgetAllBut(ids)
	for _, id := range startAfter(ids, h.checks.stuckAt()) {
		if ctx.Err() != nil {
			return
		}
		if !h.checks.due(id) {
			continue // its entry was read before, and its check is not due
		}
		sctx, cancel := h.storageContext(ctx)
		e, err := h.store.LoadWatch(sctx, id)
		if errors.Is(err, ledger.ErrCorruptWatch) {
			h.logger.Warn("removing a corrupt watch entry", zap.String("payment_id", id))
			_ = h.store.DeleteWatch(sctx, id)
		}
		stop := stalled(ctx, sctx)
		cancel()
		if stop {
			h.reconcileStalled(id, err)
			return
		}
		if errors.Is(err, ledger.ErrCorruptWatch) {
			continue
		}
		if err != nil || e == nil {
			continue
		}
		if time.Now().Before(e.NextCheck) {
			h.checks.set(id, e.NextCheck)
			continue
		}
		if h.reconcile(ctx, e) {
			h.reconcileStalled(id, nil)
			return
		}
		h.checks.set(id, e.NextCheck)
	}
	h.checks.setStuck("")
}

// reconcileStalled ends a pass at id, whose storage call ran out of time:
// the next pass starts after it.
func (h *Handler) reconcileStalled(id string, err error) {
	h.logger.Warn("storage did not answer within the timeout; this reconciler pass ends here, the next one tries again",
		zap.String("payment_id", id), zap.Error(err))
	h.checks.setStuck(id)
}

// checkTimes remembers, on the instance that reconciles, when each watched
// payment's next check is due, so that a pass reads only the entries that
// are due (or new). Only the reconciling instance moves a check; an
// instance that takes the reconciler over starts empty and reads each
// entry once.
type checkTimes struct {
	mu   sync.Mutex
	next map[string]time.Time
	// stuck is the payment at which storage stalled in the last pass that
	// ended early: the next pass starts after it, so that one entry storage
	// never answers for holds up only itself.
	stuck string
}

func (c *checkTimes) stuckAt() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stuck
}

func (c *checkTimes) setStuck(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stuck = id
}

// due reports whether id's entry must be read: its check is due, or its
// time is not known here.
func (c *checkTimes) due(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	next, ok := c.next[id]
	return !ok || !time.Now().Before(next)
}

func (c *checkTimes) set(id string, next time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next == nil {
		c.next = map[string]time.Time{}
	}
	c.next[id] = next
}

// forgetAllBut drops the times of payments no longer watched.
func (c *checkTimes) forgetAllBut(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		keep[id] = struct{}{}
	}
	for id := range c.next {
		if _, ok := keep[id]; !ok {
			delete(c.next, id)
		}
	}
}

// reconcile checks one watched payment under its locks: the record first
// (a client may have completed it), then Pi. It reports whether storage
// stalled reading the record; the entry is then left as it is.
func (h *Handler) reconcile(ctx context.Context, e *ledger.WatchEntry) bool {
	id := e.PaymentID
	// The lock gets the pass's own context, which lives until unlock (a
	// storage module may keep its lock fresh only while it does, and the
	// work under it can outlast one timeout); lockPayment bounds the wait.
	unlock, ge := h.lockPayment(ctx, id)
	if ge != nil {
		h.postpone(ctx, e, "busy", ge)
		return false
	}
	defer unlock()
	lctx, cancel := h.storageContext(ctx)
	defer cancel()
	rec, err := h.store.Load(lctx, id)
	if stalled(ctx, lctx) {
		return true // writing the entry would wait as long again
	}
	if err != nil {
		h.postpone(ctx, e, "storage_unavailable", err)
		return false
	}
	if rec.Completed() && rec.Unsaved {
		// Completed, but its record is only in memory: keep watching it
		// until the record is on disk, or a crash would lose it.
		h.postpone(ctx, e, "record_unsaved", nil)
		return false
	}
	if rec.Completed() {
		h.fillPayer(lctx, rec) // completed before this approval's entry was written
		h.settle(ctx, e, reconciledByClient, zap.DebugLevel, "watched payment was completed by its client")
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, time.Duration(h.Timeout))
	defer cancel()
	st := &step{phase: phaseReconcile, id: id, start: time.Now()}
	p, ge := h.read(pctx, st)
	switch {
	case ge != nil && ge.Code == "payment_not_found":
		h.settle(ctx, e, reconciledNotFound, zap.WarnLevel, "watched payment is unknown to Pi; no longer watched")
		return false
	case ge != nil:
		h.postpone(ctx, e, "pi_unavailable", ge)
		return false
	}
	if ge := h.ours(p, st); ge != nil {
		h.settle(ctx, e, reconciledRefused, zap.ErrorLevel, "watched payment is not this app's to complete; no longer watched", zap.String("error", ge.Code))
		return false
	}
	givenUp := !time.Now().Before(e.Approved.Add(time.Duration(h.ReconcileGiveUp)))
	verified := p.TxID() != "" && p.Transaction.Verified && p.Status.TransactionVerified
	switch {
	case p.Status.DeveloperCompleted && p.TxID() != "" && !paid(p, p.TxID()):
		// Completed, but Pi does not show the transaction verified: never
		// delivered as verified (the complete route refuses it too).
		h.postpone(ctx, e, "completed_unverified", nil)
	case paid(p, p.TxID()):
		// Checked as the complete route checks a payment it finds completed.
		ge := h.acceptable(p, st)
		if ge == nil {
			ge = h.crossCheck(pctx, p, p.TxID())
		}
		switch {
		case ge != nil && ge.Retryable:
			h.postpone(ctx, e, ge.Code, ge)
		case ge != nil:
			h.settle(ctx, e, reconciledRefused, zap.ErrorLevel, "payment completed at Pi but refused by the guard's checks; not delivered, an operator must look",
				zap.String("txid", p.TxID()), zap.String("error", ge.Code))
		default:
			h.queueDelivery(ctx, e, rec, p, reconciledAlreadyCompleted)
		}
	case p.IsCancelled():
		outcome := reconciledCancelled
		if e.CancelledByGuard {
			outcome = reconciledCancelledByGuard
		}
		h.notifyAndSettle(ctx, e, verify.PhaseCancel, p, outcome)
	case verified:
		h.completeVanished(ctx, pctx, st, e, rec, p, givenUp)
	case !givenUp && p.TxID() == "":
		h.postpone(ctx, e, "no_transaction", nil)
	case !givenUp:
		h.postpone(ctx, e, "unverified", nil)
	case p.TxID() == "" && h.ReconcileCancel && h.redeliverURL != nil:
		cancelled, err := st.pi(func() (*piclient.Payment, error) { return h.pi.Cancel(pctx, id) })
		if err != nil {
			h.postpone(ctx, e, "cancel_failed", err)
			return false
		}
		e.CancelledByGuard = true
		h.notifyAndSettle(ctx, e, verify.PhaseCancel, cancelled, reconciledCancelledByGuard)
	default:
		h.notifyAndSettle(ctx, e, phaseReconcile, p, reconciledGaveUp)
	}
	return false
}

// completeVanished completes at Pi a payment whose transaction Pi verified
// but whose client never came back, and queues its delivery to the app.
// Without redeliver_to the app could never hear of it, so the guard only
// reports it and leaves it incomplete at Pi for the SDK's incomplete flow.
func (h *Handler) completeVanished(ctx, pctx context.Context, st *step, e *ledger.WatchEntry, rec *ledger.Record, p *piclient.Payment, givenUp bool) {
	if h.redeliverURL == nil {
		if givenUp {
			h.settle(ctx, e, reconciledUndeliverable, zap.ErrorLevel,
				"payment paid but never completed: without redeliver_to the guard cannot deliver it, so it did not complete it; it stays incomplete at Pi until the user's app reports it",
				zap.String("txid", p.TxID()))
			return
		}
		h.logger.Warn("payment paid but not completed by its client; set redeliver_to so the guard can complete and deliver it",
			zap.String("phase", phaseReconcile), zap.String("payment_id", e.PaymentID), zap.String("txid", p.TxID()))
		h.postpone(ctx, e, "paid_not_completed", nil)
		return
	}
	st.txid = p.TxID()
	h.approvals.take(st.id) // this completion uses the fresh read
	ge := h.completable(p, st)
	var done *piclient.Payment
	if ge == nil {
		done, ge = h.complete(pctx, st, p)
	}
	if ge != nil {
		final := map[string]bool{"blockchain_mismatch": true, "amount_not_allowed": true, "txid_mismatch": true, "wrong_network": true, "wrong_direction": true}
		if final[ge.Code] || (!ge.Retryable && givenUp) {
			h.settle(ctx, e, reconciledRefused, zap.ErrorLevel, "payment paid but the guard refused to complete it; no longer watched, an operator must look",
				zap.String("txid", st.txid), zap.String("error", ge.Code), zap.NamedError("cause", ge.cause))
			return
		}
		h.postpone(ctx, e, ge.Code, ge)
		return
	}
	h.queueDelivery(ctx, e, rec, done, reconciledCompleted)
}

// queueDelivery records a payment Pi completed as an owed delivery of the
// request its client would have sent, due now: the redelivery worker then
// delivers it to the app with the verified header, and a client that
// comes back later gets the normal replay.
func (h *Handler) queueDelivery(ctx context.Context, e *ledger.WatchEntry, rec *ledger.Record, p *piclient.Payment, outcome string) {
	if rec == nil {
		rec = &ledger.Record{PaymentID: e.PaymentID}
	}
	rec.MarkCompleted(p, p.TxID())
	// The payer, when it comes back, gets the app's answer as a replay.
	rec.Request = canonicalCompletion(h.CompletePath, e.PaymentID, p.TxID(), e.By)
	if e.By != nil {
		rec.Payer, rec.PayerBefore = e.By.Payer, e.By.Before
	}
	rec.Delivery = ledger.Delivery{State: ledger.Pending, NextAttempt: time.Now().UTC()}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
	defer cancel()
	if err := h.store.Save(sctx, rec); err != nil {
		// Still watched: the next check finds it completed at Pi and records it.
		h.logger.Error("payment completed at Pi by the reconciler but not recorded; retrying", zap.String("phase", phaseReconcile),
			zap.String("payment_id", e.PaymentID), zap.String("txid", p.TxID()), zap.Error(err))
		h.postpone(ctx, e, "storage_unavailable", err)
		return
	}
	msg := "payment reconciled: completed at Pi without its client; delivering it to the app"
	if outcome == reconciledAlreadyCompleted {
		msg = "payment reconciled: Pi shows it completed but the guard had no record; delivering it to the app"
	}
	h.settle(ctx, e, outcome, zap.InfoLevel, msg, zap.String("txid", p.TxID()))
}

// notifyAndSettle tells the app, with a notice on the cancel route, that a
// watched payment is cancelled (phase cancel) or given up (phase
// reconcile), then forgets it. A notice the app does not accept is sent
// again at the next check, at most redeliver_attempts times.
func (h *Handler) notifyAndSettle(ctx context.Context, e *ledger.WatchEntry, phase string, p *piclient.Payment, outcome string) {
	msg := map[string]string{
		reconciledCancelled:        "watched payment was cancelled; the app was told",
		reconciledCancelledByGuard: "watched payment had no transaction long after the wallet's timeout; cancelled at Pi and the app was told",
		reconciledGaveUp:           "watched payment has no verified transaction long after the wallet's timeout; no longer watched, the app was told",
	}[outcome]
	if h.redeliverURL == nil {
		h.settle(ctx, e, outcome, zap.InfoLevel, msg+" (not the app: redeliver_to is not set)")
		return
	}
	status, err := h.sendNotice(ctx, phase, p)
	if err == nil && (status < 200 || status > 299) {
		err = fmt.Errorf("the app answered HTTP %d", status)
	}
	if err != nil {
		e.Notices++
		if e.Notices >= h.RedeliverAttempts {
			h.settle(ctx, e, reconciledNoticeFailed, zap.WarnLevel, "the app never accepted the notice of a watched payment; no longer watched",
				zap.String("notice_phase", phase), zap.Error(err))
			return
		}
		h.postpone(ctx, e, "notice_failed", err)
		return
	}
	h.settle(ctx, e, outcome, zap.InfoLevel, msg, zap.String("notice_phase", phase))
}

// sendNotice posts {"paymentId": ...} to the app's cancel route at
// redeliver_to with a signed notice of phase, and returns the app's status.
func (h *Handler) sendNotice(ctx context.Context, phase string, p *piclient.Payment) (int, error) {
	body, err := json.Marshal(map[string]string{"paymentId": p.Identifier})
	if err != nil {
		return 0, err
	}
	token, err := h.signer.Sign(verify.KindNotice, phase, p, verify.Binding{Method: http.MethodPost, Path: h.CancelPath, Body: body}, "")
	if err != nil {
		return 0, err
	}
	target := *h.redeliverURL
	target.Path = h.redeliverURL.Path + h.CancelPath
	actx, cancel := context.WithTimeout(ctx, time.Duration(h.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(h.NoticeHeader, token)
	resp, err := h.redeliverClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}

// postpone keeps a payment watched and schedules its next check with
// backoff, never later than the moment it is given up.
func (h *Handler) postpone(ctx context.Context, e *ledger.WatchEntry, seen string, why error) {
	e.Checks++
	e.LastSeen, e.LastError = seen, ""
	if why != nil {
		e.LastError = why.Error()
	}
	now := time.Now()
	next := now.Add(h.reconcileBackoff(e.Checks))
	if giveUp := e.Approved.Add(time.Duration(h.ReconcileGiveUp)); now.Before(giveUp) && next.After(giveUp) {
		next = giveUp
	}
	e.NextCheck = next.UTC()
	level := zap.DebugLevel
	if why != nil {
		level = zap.WarnLevel
	}
	h.logReconcile(level, "watched payment not settled yet; checking again later", e, seen,
		zap.Time("next_check", e.NextCheck), zap.NamedError("cause", why))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
	defer cancel()
	if err := h.store.SaveWatch(sctx, e); err != nil {
		h.logger.Warn("could not update the watch list of approved payments", zap.String("payment_id", e.PaymentID), zap.Error(err))
	}
}

// reconcileBackoff is the wait after the n-th check that left a payment
// watched: reconcile_after doubled per check, at most a quarter of
// reconcile_give_up (but no less than reconcile_after) and 15 minutes.
func (h *Handler) reconcileBackoff(n int) time.Duration {
	after := time.Duration(h.ReconcileAfter)
	limit := min(max(time.Duration(h.ReconcileGiveUp)/4, after), maxReconcileBackoff)
	d := after
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// settle forgets a watched payment with a final outcome: counted, logged.
func (h *Handler) settle(ctx context.Context, e *ledger.WatchEntry, outcome string, level zapcore.Level, msg string, fields ...zap.Field) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
	defer cancel()
	if err := h.store.DeleteWatch(sctx, e.PaymentID); err != nil {
		h.logger.Warn("could not remove a payment from the watch list; it will be checked again", zap.String("payment_id", e.PaymentID), zap.Error(err))
	}
	h.watched.Wrote(e.PaymentID, false)
	h.metrics.reconciled.WithLabelValues(outcome).Inc()
	h.logReconcile(level, msg, e, outcome, fields...)
}

// logReconcile writes one reconciler log line: phase "reconcile", the
// payment, what was found or done, and how long ago it was approved.
func (h *Handler) logReconcile(level zapcore.Level, msg string, e *ledger.WatchEntry, outcome string, fields ...zap.Field) {
	if ce := h.logger.Check(level, msg); ce != nil {
		ce.Write(append([]zap.Field{
			zap.String("phase", phaseReconcile), zap.String("payment_id", e.PaymentID), zap.String("outcome", outcome),
			zap.Duration("since_approval", time.Since(e.Approved)), zap.Int("checks", e.Checks),
		}, fields...)...)
	}
}
