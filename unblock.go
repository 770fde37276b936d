package piguard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// phaseUnblock is the phase of an operator's unblock in logs and Pi call
// metrics.
const phaseUnblock = "unblock"

// Results of an unblock: what the guard found at Pi and did. After each,
// Pi no longer holds the payment as the user's pending one.
const (
	// unblockCompleted: Pi showed a verified transaction; the guard
	// completed the payment at Pi and recorded its delivery to the app.
	unblockCompleted = "completed"
	// unblockAlreadyCompleted: Pi showed the payment completed; the guard
	// recorded its delivery if it had no record of it.
	unblockAlreadyCompleted = "already_completed"
	// unblockCancelled: Pi showed no transaction; the guard cancelled the
	// payment at Pi and told the app.
	unblockCancelled = "cancelled"
	// unblockAlreadyCancelled: Pi showed the payment cancelled already.
	unblockAlreadyCancelled = "already_cancelled"
)

// unblockMinAge is how old a payment without a transaction must be before
// unblock cancels it: younger, its user may be in the wallet paying it.
var unblockMinAge = walletTimeout

// unblockResult is the admin API's answer to an unblock.
type unblockResult struct {
	PaymentID string `json:"payment_id"`
	// Result is one of completed, already_completed, cancelled,
	// already_cancelled.
	Result  string `json:"result"`
	TxID    string `json:"txid,omitempty"`
	Amount  string `json:"amount,omitempty"`
	UserUID string `json:"user_uid,omitempty"`
	// Delivery is the completed payment's delivery to the app, as
	// GET /pi_guard/deliveries shows it (completed results only).
	Delivery *owedDelivery `json:"delivery,omitempty"`
	// AppTold: the app accepted the verified request (completed) or the
	// cancel notice (cancelled).
	AppTold bool `json:"app_told"`
	// Message says what happened and, when the app was not told, what the
	// operator does next.
	Message string `json:"message"`
}

// serveUnblock serves POST /pi_guard/payments/{id}/unblock.
func serveUnblock(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/pi_guard/payments/")
	id, action, ok := strings.Cut(rest, "/")
	if !ok || action != "unblock" {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Message: "unknown route: use POST /pi_guard/payments/{paymentId}/unblock"}
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Message: "unblock takes POST"}
	}
	if err := piclient.ValidatePaymentID(id); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Message: fmt.Sprintf("%q is not a payment id: %v", id, err)}
	}
	h, err := unblockerOf(r.Context(), id)
	if err != nil {
		return err
	}
	res, err := h.unblock(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// unblockerOf picks the handler that acts on payment id: the one whose
// store has a record or watch entry of it, else the only API key's.
func unblockerOf(ctx context.Context, id string) (*Handler, error) {
	all := stores()
	for _, h := range all {
		if rec, err := h.store.Load(ctx, id); err == nil && rec != nil {
			return h, nil
		}
		if e, err := h.store.LoadWatch(ctx, id); err == nil && e != nil {
			return h, nil
		}
	}
	switch len(all) {
	case 0:
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Message: "no pi_guard handler is running in this Caddy"}
	case 1:
		return all[0], nil
	}
	return nil, caddy.APIError{HTTPStatus: http.StatusConflict, Message: fmt.Sprintf(
		"this Caddy runs pi_guard with %d API keys and none has a record of payment %s: unblock it from a Caddy that runs only its app's pi_guard", len(all), id)}
}

// unblock settles at Pi a payment that blocks its user ("You already have a
// pending payment on this app"), under the payment's locks and with the
// guard's own checks: it reads the payment from Pi, completes it when Pi
// shows a verified transaction and sends it to the app as verified, or
// cancels it at Pi when it has no transaction and sends the app a cancel
// notice.
func (h *Handler) unblock(ctx context.Context, id string) (*unblockResult, error) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Duration(h.Timeout))
	defer cancel()
	res, err := h.settleAtPi(pctx, id)
	if err != nil {
		var ge *guardError
		if errors.As(err, &ge) {
			return nil, caddy.APIError{HTTPStatus: ge.Status, Err: ge, Message: fmt.Sprintf("payment %s: %s (%s)", id, ge.Message, ge.Code)}
		}
		return nil, err
	}
	if res.Delivery != nil && res.Delivery.State == ledger.Pending && h.redeliverURL != nil {
		// Send it now, as a retry does, unless a request or the worker
		// holds the payment (then the worker sends it: it is due now).
		// Its own time: a failed send counts as an attempt.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
		defer cancel()
		if unlock, ok := h.locks.TryLock(id); ok {
			h.redeliver(dctx, id)
			unlock()
		}
		if rec, err := h.store.Load(dctx, id); err == nil && rec != nil {
			row := rowOf(rec)
			res.Delivery = &row
		}
	}
	h.describeUnblock(res)
	h.logger.Warn("payment unblocked by the operator", zap.String("payment_id", id), zap.String("result", res.Result),
		zap.String("txid", res.TxID), zap.Bool("app_told", res.AppTold))
	return res, nil
}

// settleAtPi is unblock's work under the payment's locks.
func (h *Handler) settleAtPi(ctx context.Context, id string) (*unblockResult, error) {
	unlock, ge := h.lockPayment(ctx, id)
	if ge != nil {
		return nil, ge
	}
	defer unlock()
	rec, err := h.store.Load(ctx, id)
	if err != nil {
		return nil, storageFailure(err, id)
	}
	res := &unblockResult{PaymentID: id}
	if rec.Completed() {
		// Pi completed it and the guard knows: nothing blocks the user.
		row := rowOf(rec)
		res.Result, res.TxID, res.Amount, res.Delivery = unblockAlreadyCompleted, rec.TxID, row.Amount, &row
		res.AppTold = rec.Delivery.State == ledger.Delivered
		return res, nil
	}
	st := &step{phase: phaseUnblock, id: id, start: time.Now(), limit: h.piLimit, h: h}
	p, ge := h.read(ctx, st)
	if ge != nil {
		return nil, ge
	}
	if ge := h.ours(p, st); ge != nil {
		return nil, ge
	}
	res.Amount, res.UserUID, res.TxID = verify.AmountText(p.Amount), p.UserUID, p.TxID()
	switch {
	case p.IsCancelled():
		h.unwatch(id)
		res.Result = unblockAlreadyCancelled
		return res, nil
	case p.TxID() != "" && !(p.Transaction.Verified && p.Status.TransactionVerified):
		ge := refuse(http.StatusConflict, "transaction_not_verified",
			"Pi shows transaction %s but has not verified it, so the guard neither completes nor cancels it; run unblock again in a few minutes", p.TxID())
		ge.Retryable = true
		return nil, ge
	case p.TxID() != "":
		return h.unblockPaid(ctx, st, rec, p, res)
	}
	if created, err := time.Parse(time.RFC3339Nano, p.CreatedAt); err == nil && time.Since(created) < unblockMinAge {
		ge := refuse(http.StatusConflict, "payment_in_progress",
			"the payment was created %s ago and has no transaction yet: its user may be paying right now; run unblock again after a minute", time.Since(created).Round(time.Second))
		ge.Retryable = true
		return nil, ge
	}
	cancelled, err := st.pi(func() (*piclient.Payment, error) { return h.pi.Cancel(ctx, id) })
	if err != nil {
		// Cancelled meanwhile, or a transaction just recorded: a fresh read tells.
		fresh, rerr := st.pi(func() (*piclient.Payment, error) { return h.pi.GetPayment(ctx, id) })
		if rerr != nil || !fresh.IsCancelled() || fresh.TxID() != "" {
			return nil, piFailure(err, id)
		}
		cancelled = fresh
	}
	h.unwatch(id)
	res.Result = unblockCancelled
	if h.redeliverURL != nil {
		status, err := h.sendNotice(ctx, verify.PhaseCancel, cancelled)
		res.AppTold = err == nil && is2xx(status)
	}
	return res, nil
}

// unblockPaid completes at Pi a payment with a verified transaction (or
// finds it completed) after the complete route's checks, and records its
// delivery to the app, due now.
func (h *Handler) unblockPaid(ctx context.Context, st *step, rec *ledger.Record, p *piclient.Payment, res *unblockResult) (*unblockResult, error) {
	st.txid = p.TxID()
	h.approvals.take(st.id) // this completion uses the fresh read
	done := p
	res.Result = unblockAlreadyCompleted
	if !paid(p, st.txid) {
		if ge := h.completable(p, st); ge != nil {
			return nil, ge
		}
		var ge *guardError
		if done, ge = h.complete(ctx, st, p); ge != nil {
			return nil, ge
		}
		res.Result = unblockCompleted
	} else {
		if ge := h.acceptable(p, st); ge != nil {
			return nil, ge
		}
		if ge := h.crossCheck(ctx, p, st.txid); ge != nil {
			return nil, ge
		}
	}
	if rec == nil {
		rec = &ledger.Record{PaymentID: st.id}
	}
	rec.MarkCompleted(done, st.txid)
	// Its payer, when it comes back, gets the app's answer as a replay.
	who := h.approverOf(ctx, st.id)
	rec.Request = canonicalCompletion(h.CompletePath, st.id, st.txid, who)
	if who != nil {
		rec.Payer, rec.PayerBefore = who.Payer, who.Before
	}
	rec.Delivery = ledger.Delivery{State: ledger.Pending, NextAttempt: time.Now().UTC()}
	// Pi has completed it: the record is written even if the operator's
	// request is gone.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
	defer cancel()
	if err := h.store.Save(sctx, rec); err != nil {
		h.logger.Error("could not write the record of a payment an operator unblocked; it is kept in memory and written when storage accepts it",
			zap.String("payment_id", st.id), zap.Error(err))
	} else {
		h.unwatch(st.id)
	}
	row := rowOf(rec)
	res.Delivery = &row
	return res, nil
}

// describeUnblock writes the result's message: what happened and what is
// left to the operator.
func (h *Handler) describeUnblock(res *unblockResult) {
	id := res.PaymentID
	switch res.Result {
	case unblockCancelled:
		res.Message = fmt.Sprintf("payment %s had no transaction: cancelled at Pi; its user can pay again", id)
		switch {
		case h.redeliverURL == nil:
			res.Message += "; the app was not told (no redeliver_to): release its order by hand"
		case !res.AppTold:
			res.Message += "; the app did not accept the cancel notice: release its order by hand"
		default:
			res.Message += "; the app accepted the cancel notice"
		}
	case unblockAlreadyCancelled:
		res.Message = fmt.Sprintf("payment %s is cancelled at Pi already: it blocks nobody", id)
	default:
		verb := "completed at Pi with transaction " + res.TxID
		if res.Result == unblockAlreadyCompleted {
			verb = "already completed at Pi with transaction " + res.TxID
		}
		res.Message = fmt.Sprintf("payment %s %s; its user can pay again", id, verb)
		d := res.Delivery
		switch {
		case d != nil && d.State == ledger.Delivered:
			res.AppTold = true
			res.Message += "; the app accepted it"
		case h.redeliverURL == nil:
			res.Message += fmt.Sprintf("; not delivered (no redeliver_to): deliver it by hand, then `caddy pi-guard resolve %s --note ...`", id)
		case d != nil && d.State == ledger.Exhausted:
			res.Message += fmt.Sprintf("; the app never accepted it (%s) and redelivery is exhausted: fix the app, then `caddy pi-guard retry %s`", orDash(d.LastError), id)
		case d != nil:
			res.Message += fmt.Sprintf("; the app has not accepted it yet (%s): the redelivery worker goes on, `caddy pi-guard deliveries` follows it", orDash(d.LastError))
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
