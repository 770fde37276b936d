package piguard

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// serveApprove handles onReadyForServerApproval. The app sees the payment
// first, in a signed notice, and decides: a 2xx answer lets the guard approve
// at Pi; any other answer goes back to the client and Pi is not asked (and,
// with cancel_rejected, the payment is cancelled at Pi).
func (h *Handler) serveApprove(ctx context.Context, st *step, x *exchange) error {
	p, ge := h.peek(ctx, st, x.r)
	if ge != nil {
		return ge
	}
	if ge := h.acceptable(p, st); ge != nil {
		return ge
	}
	switch {
	case p.Status.DeveloperCompleted:
		return refuse(http.StatusConflict, "already_completed", "Pi shows the payment completed: there is nothing to approve")
	case p.TxID() != "":
		return refuse(http.StatusConflict, "transaction_present", "the payment's transaction is already on the blockchain: post it to the complete route instead")
	}
	// Approved already (by this guard, or elsewhere): only its approver, the
	// payer, may approve it again and be answered by the app. The watch entry
	// is never written again, so its times never move.
	again := p.Status.DeveloperApproved
	payer := !again || h.approverAgain(ctx, st, p, x.r)
	if !payer && !h.RespondApprove {
		return refuse(http.StatusConflict, "already_approved", "the payment is already approved, by another session; only the session that approved it may approve it again")
	}
	if h.RespondApprove {
		who := h.newApprover(x.r, st.uid, nil)
		approved, ge := h.approveAtPi(ctx, st, p)
		if ge != nil {
			return h.approvalUnknown(ge, p, who, again)
		}
		p = approved
		if payer {
			h.remember(ctx, p, who, again)
		}
		st.ready = time.Now()
		h.allowOrigin(x.w, x.r)
		x.w.Header().Set("Content-Type", "application/json")
		x.w.Header().Set("Cache-Control", "no-store")
		return json.NewEncoder(x.w).Encode(struct {
			Approved  bool   `json:"approved"`
			PaymentID string `json:"paymentId"`
		}{true, p.Identifier})
	}

	if err := h.setNotice(st, p, x); err != nil {
		return err
	}
	// The app's answer, headers included, is held until the guard knows it
	// passes it on: an error must never carry the app's headers.
	var buf bytes.Buffer
	rr := caddyhttp.NewResponseRecorder(newHeldWriter(x.w), &buf, func(int, http.Header) bool { return true })
	if err := st.forward(x, rr); err != nil {
		// The app could not be asked; Pi is not asked either.
		return appUnreachable(err, "the app could not be asked to accept this payment, so Pi was not asked to approve it; retrying this request is safe")
	}
	if status := rr.Status(); status != 0 && (status < 200 || status > 299) {
		st.outcome = "rejected_by_app"
		if h.CancelRejected && !p.Status.DeveloperApproved && st.uid != "" && p.UserUID == st.uid {
			if _, err := st.pi(func() (*piclient.Payment, error) { return h.pi.Cancel(ctx, st.id) }); err != nil {
				h.logger.Warn("could not cancel a payment the app rejected", zap.String("payment_id", st.id), zap.Error(err))
			} else {
				st.outcome = "rejected_by_app_cancelled"
			}
		}
		return rr.WriteResponse()
	}
	// The app's answer may set a new session cookie (a cookie-stored
	// session written by its approve handler): the payer sends that next.
	who := h.newApprover(x.r, st.uid, setCookies(rr.Header()))
	approved, ge := h.approveAtPi(ctx, st, p)
	if ge != nil {
		return h.approvalUnknown(ge, p, who, again)
	}
	p = approved
	h.remember(ctx, p, who, again)
	return rr.WriteResponse()
}

// setCookies parses the Set-Cookie headers of an answer.
func setCookies(h http.Header) []*http.Cookie {
	var out []*http.Cookie
	for _, line := range h.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// approvalUnknown handles an approval whose outcome at Pi is unknown (Pi's
// answer and the re-read were lost: ge is retryable): Pi may have approved
// it, so its approver is remembered and the payment watched all the same.
// Otherwise the payer's retry would be refused as a stranger's, its
// completion's answer withheld, and a vanished client never reconciled.
// The reconciler settles a payment that was not approved after all.
func (h *Handler) approvalUnknown(ge *guardError, p *piclient.Payment, who *ledger.Approver, again bool) *guardError {
	if ge.Retryable && !again {
		// The client gets the guard's error, not the app's answer: it
		// keeps the cookies it had.
		who = who.RequestOnly()
		h.approvals.putApprover(p.Identifier, who)
		h.watch(p, who)
	}
	return ge
}

// remember keeps an approval by its payer in this process (the shortcut
// for its completion) and, the first time only, in the watch list. When
// the payer approves again and the app's answer sets new cookies, the
// approver is renewed: the new credential counts, and the one this request
// proved counts too (the answer may not reach the browser); the watch
// entry keeps its times.
func (h *Handler) remember(ctx context.Context, p *piclient.Payment, who *ledger.Approver, again bool) {
	if !again {
		h.approvals.put(p, who)
		h.watch(p, who)
		return
	}
	if len(who.Before) == 0 {
		h.approvals.put(p, who) // the first approver stays
		return
	}
	h.approvals.setApprover(p, who)
	var e *ledger.WatchEntry
	if e = h.watched.Queued(p.Identifier); e == nil {
		e, _ = h.store.LoadWatch(ctx, p.Identifier)
	}
	if e != nil {
		renewed := *e
		renewed.By = who
		h.afterWatchChange(h.watched.Put(&renewed))
	}
}

// approverAgain reports whether an approve of a payment Pi shows approved
// comes from its payer: its owner signed in with bind_user, or the session
// that approved it through this guard.
func (h *Handler) approverAgain(ctx context.Context, st *step, p *piclient.Payment, r *http.Request) bool {
	if st.uid != "" && p.UserUID == st.uid {
		return true
	}
	return carriedBy(h.stepApprover(ctx, st), h.stepCredentials(st, r))
}

// serveComplete handles onReadyForServerCompletion.
func (h *Handler) serveComplete(ctx context.Context, st *step, rec *ledger.Record, x *exchange) error {
	if rec.Completed() {
		if ge := h.ours(rec.Payment, st); ge != nil {
			return ge
		}
		if piclient.NormalizeTxID(rec.TxID) != st.txid {
			return refuse(http.StatusConflict, "txid_mismatch", "the txid is not this payment's transaction")
		}
		st.outcome = "replayed"
		h.fillPayer(ctx, rec)
		return h.deliver(ctx, st, rec, x, true)
	}
	p, ge := h.complete(ctx, st, h.approvals.take(st.id))
	if ge != nil {
		return ge
	}
	return h.deliver(ctx, st, h.recordCompletion(ctx, st, rec, p, x), x, false)
}

// serveIncomplete handles onIncompletePaymentFound. The posted payment is
// not trusted: only its identifier is used, and the payment is re-read from
// Pi. With a transaction it is completed (or found completed) and forwarded
// as verified, exactly like a completion. Without one it is cancelled at Pi,
// so that the user can start a new payment, but only for a caller the guard
// can tie to the payment's user (its owner, with bind_user) or once the
// payment is older than cancel_incomplete_after: payment ids are not
// secrets, and a stranger must not cancel a payment its owner is still
// paying. The app gets a notice so it can release the order. (Pi's reference
// backend never cancels on this route; without a transaction it has nothing
// to complete either, and the user stays blocked.)
func (h *Handler) serveIncomplete(ctx context.Context, st *step, rec *ledger.Record, x *exchange) error {
	if rec.Completed() {
		if ge := h.ours(rec.Payment, st); ge != nil {
			return ge
		}
		// A replay delivers the stored request, never this caller's.
		st.txid, st.outcome = rec.TxID, "replayed"
		h.fillPayer(ctx, rec)
		return h.deliver(ctx, st, rec, x, true)
	}
	p, ge := h.read(ctx, st)
	if ge != nil {
		return ge
	}
	if ge := h.incompleteRefusal(p, st); ge != nil {
		return ge
	}
	if st.txid = p.TxID(); st.txid == "" {
		cancelled, err := st.pi(func() (*piclient.Payment, error) { return h.pi.Cancel(ctx, st.id) })
		if err != nil {
			// Pi refuses to cancel a payment cancelled meanwhile
			// (cancelled_payment) or one whose transaction was just recorded
			// (payment_tx_present): only a fresh read tells.
			fresh, rerr := st.pi(func() (*piclient.Payment, error) { return h.pi.GetPayment(ctx, st.id) })
			if rerr != nil || !fresh.IsCancelled() || fresh.TxID() != "" {
				return piFailure(err, st.id)
			}
			cancelled = fresh
		}
		st.outcome = "cancelled_without_transaction"
		return h.forwardNotice(st, cancelled, x)
	}
	// This route completes the payment: a remembered approval must not let
	// a later completion skip the read and post /complete again.
	h.approvals.take(st.id)
	done := p
	if !paid(p, st.txid) {
		if ge := h.completable(p, st); ge != nil {
			return ge
		}
		if done, ge = h.complete(ctx, st, p); ge != nil {
			return ge
		}
	} else {
		st.outcome = "already_completed"
		if ge := h.crossCheck(ctx, p, st.txid); ge != nil {
			return ge
		}
	}
	return h.deliver(ctx, st, h.recordCompletion(ctx, st, rec, done, x), x, false)
}

// incompleteRefusal is the answer to an incomplete payment's post that p,
// the payment as Pi shows it, settles: not acceptable, another transaction
// than the posted payment names (or another link to it), or no transaction
// and not to be cancelled for this caller. Nil when the guard must act.
func (h *Handler) incompleteRefusal(p *piclient.Payment, st *step) *guardError {
	if ge := h.acceptable(p, st); ge != nil {
		return ge
	}
	if st.claimed != "" && !strings.EqualFold(st.claimed, p.TxID()) {
		// An app that reads the posted payment's transaction would read
		// another one than Pi's.
		return refuse(http.StatusConflict, "txid_mismatch", "the posted payment names another transaction than Pi shows for it")
	}
	if st.claimedLink != "" && (p.Transaction == nil || st.claimedLink != p.Transaction.Link) {
		// An app that follows the posted link (Pi's reference backend
		// does) would read another transaction, or another server.
		return refuse(http.StatusConflict, "link_mismatch", "the posted payment links its transaction elsewhere than Pi does; post the payment as the SDK gave it")
	}
	if p.TxID() == "" {
		return h.mayCancelIncomplete(p, st)
	}
	return nil
}

// mayCancelIncomplete refuses to cancel an incomplete payment without a
// transaction for a caller that is not its owner while it is younger than
// cancel_incomplete_after (or when its age cannot be told).
func (h *Handler) mayCancelIncomplete(p *piclient.Payment, st *step) *guardError {
	if st.uid != "" && p.UserUID == st.uid {
		return nil // bind_user: the signed-in owner
	}
	limit := time.Duration(h.CancelIncompleteAfter)
	created, err := time.Parse(time.RFC3339Nano, p.CreatedAt)
	if err == nil && time.Since(created) >= limit {
		return nil
	}
	ge := refuse(http.StatusConflict, "payment_in_progress",
		"the payment has no blockchain transaction yet; the guard cancels it only for its signed-in owner, or once it is older than %s; retry later", limit)
	ge.Retryable = true
	return ge
}

// serveCancel handles onCancel: when Pi confirms the payment is cancelled,
// the app gets a notice so it can release the pending order.
func (h *Handler) serveCancel(ctx context.Context, st *step, x *exchange) error {
	p, ge := h.peek(ctx, st, x.r)
	if ge != nil {
		return ge
	}
	if ge := h.ours(p, st); ge != nil {
		return ge
	}
	if !p.IsCancelled() {
		return refuse(http.StatusConflict, "not_cancelled", "Pi does not show the payment cancelled")
	}
	st.outcome = "cancelled"
	return h.forwardNotice(st, p, x)
}

// setNotice puts a signed notice on the request: the payment as Pi reported
// it, never proof of payment.
func (h *Handler) setNotice(st *step, p *piclient.Payment, x *exchange) error {
	token, err := h.signer.Sign(verify.KindNotice, st.phase, p, verify.Binding{Method: x.r.Method, Path: x.r.URL.Path, Body: x.body}, st.uid)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	x.r.Header.Set(h.NoticeHeader, token)
	return nil
}

// forwardNotice forwards the request with a signed notice.
func (h *Handler) forwardNotice(st *step, p *piclient.Payment, x *exchange) error {
	if err := h.setNotice(st, p, x); err != nil {
		return err
	}
	hw := newHeldWriter(x.w) // an error answer never carries the app's headers
	if err := st.forward(x, hw); err != nil && !hw.wrote {
		return appUnreachable(err, "Pi shows the payment cancelled, but the app could not be told; retrying this request is safe")
	}
	return nil
}

// appUnreachable is the answer when the app could not be reached with a
// notice (nothing was written to the client yet).
func appUnreachable(err error, msg string) *guardError {
	ge := refuse(http.StatusBadGateway, "upstream_unavailable", "%s", msg)
	ge.Retryable, ge.cause = true, err
	return ge
}

// storedCompletion returns the request to record and deliver for a
// completion, and sets the record's payer. The payer's own request is kept
// as posted (on the configured route: see ServeHTTP); a completion by
// anyone else records the canonical request, the reference frontend's
// completion in the shape the payer's approve was posted in, on the complete
// route, so that no stranger decides what the app receives.
func (h *Handler) storedCompletion(ctx context.Context, st *step, rec *ledger.Record, x *exchange) *ledger.Request {
	who := h.approverOf(ctx, st.id)
	if who == nil {
		who = &ledger.Approver{}
		if st.uid != "" && rec.Payment.UserUID == st.uid {
			who.Payer = h.stepCredentials(st, x.r)
		}
	}
	rec.Payer, rec.PayerBefore = who.Payer, who.Before
	if h.isPayer(st, rec, x.r) {
		sr := newStoredRequest(x.r, x.body)
		if who.Host != "" {
			sr.Host = who.Host
		}
		return sr
	}
	return canonicalCompletion(h.CompletePath, st.id, st.txid, who)
}

// recordCompletion records a payment Pi completed, with the request to
// deliver, before anything is forwarded. When storage refuses the write, the
// record is kept in memory (owed, listed and redelivered like a written one,
// written as soon as storage accepts it) and the payment is delivered all
// the same: Pi has completed it, and the app is its best chance to hear of it.
func (h *Handler) recordCompletion(ctx context.Context, st *step, rec *ledger.Record, p *piclient.Payment, x *exchange) *ledger.Record {
	if rec == nil {
		rec = &ledger.Record{PaymentID: st.id}
	}
	rec.MarkCompleted(p, st.txid)
	rec.Request = h.storedCompletion(ctx, st, rec, x)
	rec.Delivery = ledger.Delivery{State: ledger.Pending, NextAttempt: time.Now().Add(h.deliveryGrace())}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
	defer cancel()
	if err := h.store.Save(sctx, rec); err != nil {
		h.logger.Error("could not write the record of a completed payment; it is kept in memory, delivered now and written when storage accepts it",
			zap.String("payment_id", st.id), zap.Error(err))
		// Still watched: should the process die before the record is
		// written, the reconciler finds the payment completed at Pi and
		// records and delivers it (persistUnsaved unwatches it once written).
		return rec
	}
	h.unwatch(st.id)
	return rec
}
