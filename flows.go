package piguard

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// serveApprove handles onReadyForServerApproval. The app sees the payment
// first, in a signed notice, and decides: a 2xx answer lets the guard approve
// at Pi; any other answer goes back to the client and Pi is not asked (and,
// with cancel_rejected, the payment is cancelled at Pi).
func (h *Handler) serveApprove(ctx context.Context, st *step, x *exchange) error {
	p, ge := h.read(ctx, st)
	if ge != nil {
		return ge
	}
	if ge := h.acceptable(p, st); ge != nil {
		return ge
	}
	if h.RespondApprove {
		if p, ge = h.approveAtPi(ctx, st, p); ge != nil {
			return ge
		}
		h.approvals.put(p)
		h.watch(p)
		st.ready = time.Now()
		x.w.Header().Set("Content-Type", "application/json")
		x.w.Header().Set("Cache-Control", "no-store")
		return json.NewEncoder(x.w).Encode(map[string]any{"approved": true, "paymentId": p.Identifier})
	}

	if err := h.setNotice(st, p, x); err != nil {
		return err
	}
	var buf bytes.Buffer
	rr := caddyhttp.NewResponseRecorder(x.w, &buf, func(int, http.Header) bool { return true })
	if err := st.forward(x, rr); err != nil {
		return err // the app could not be asked; Pi is not asked either
	}
	if status := rr.Status(); status != 0 && (status < 200 || status > 299) {
		st.outcome = "rejected_by_app"
		if h.CancelRejected && !p.Status.DeveloperApproved {
			if _, err := st.pi(func() (*piclient.Payment, error) { return h.pi.Cancel(ctx, st.id) }); err != nil {
				h.logger.Warn("could not cancel a payment the app rejected", zap.String("payment_id", st.id), zap.Error(err))
			} else {
				st.outcome = "rejected_by_app_cancelled"
			}
		}
		return rr.WriteResponse()
	}
	if p, ge = h.approveAtPi(ctx, st, p); ge != nil {
		return ge
	}
	h.approvals.put(p)
	h.watch(p)
	return rr.WriteResponse()
}

// serveComplete handles onReadyForServerCompletion.
func (h *Handler) serveComplete(ctx context.Context, st *step, rec *record, x *exchange) error {
	if rec.completed() {
		if ge := h.ours(rec.Payment, st); ge != nil {
			return ge
		}
		if rec.TxID != st.txid {
			return refuse(http.StatusConflict, "txid_mismatch", "the txid is not this payment's transaction")
		}
		st.outcome = "replayed"
		return h.deliver(ctx, st, rec, x)
	}
	p, ge := h.complete(ctx, st, h.approvals.take(st.id))
	if ge != nil {
		return ge
	}
	return h.deliver(ctx, st, h.recordCompletion(ctx, st, rec, p, x), x)
}

// serveIncomplete handles onIncompletePaymentFound. The posted payment is
// not trusted: only its identifier is used, and the payment is re-read from
// Pi. With a transaction it is completed (or found completed) and forwarded
// as verified, exactly like a completion; without one it is cancelled at Pi,
// as the Pi reference app does, and the app gets a notice so it can release
// the order.
func (h *Handler) serveIncomplete(ctx context.Context, st *step, rec *record, x *exchange) error {
	if rec.completed() {
		if ge := h.ours(rec.Payment, st); ge != nil {
			return ge
		}
		st.txid, st.outcome = rec.TxID, "replayed"
		return h.deliver(ctx, st, rec, x)
	}
	p, ge := h.read(ctx, st)
	if ge != nil {
		return ge
	}
	if ge := h.acceptable(p, st); ge != nil {
		return ge
	}
	if st.txid = p.TxID(); st.txid == "" {
		cancelled, err := st.pi(func() (*piclient.Payment, error) { return h.pi.Cancel(ctx, st.id) })
		if err != nil {
			return piFailure(err, st.id)
		}
		st.outcome = "cancelled_without_transaction"
		return h.forwardNotice(st, cancelled, x)
	}
	done := p
	if !p.IsCompletedWith(st.txid) {
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
	return h.deliver(ctx, st, h.recordCompletion(ctx, st, rec, done, x), x)
}

// serveCancel handles onCancel: when Pi confirms the payment is cancelled,
// the app gets a notice so it can release the pending order.
func (h *Handler) serveCancel(ctx context.Context, st *step, x *exchange) error {
	p, ge := h.read(ctx, st)
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
	return st.forward(x, x.w)
}

// recordCompletion records a payment Pi completed, with the request to
// deliver, before anything is forwarded.
func (h *Handler) recordCompletion(ctx context.Context, st *step, rec *record, p *piclient.Payment, x *exchange) *record {
	if rec == nil {
		rec = &record{PaymentID: st.id}
	}
	rec.Phase, rec.TxID, rec.Payment = phaseComplete, st.txid, p
	rec.Request = newStoredRequest(x.r, x.body)
	rec.Delivery = delivery{State: deliveryPending, NextAttempt: time.Now().Add(h.deliveryGrace())}
	if err := h.store.save(ctx, rec); err != nil {
		// Pi has completed the payment: delivering it now is the app's best
		// chance to hear of it, record or not.
		h.logger.Error("could not record a completed payment; delivering it without a record",
			zap.String("payment_id", st.id), zap.Error(err))
	}
	h.unwatch(st.id)
	return rec
}
