package piguard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// Phases of a payment, as named in logs, errors, records and the tokens'
// phase claim.
const (
	phaseApprove  = "approve"
	phaseComplete = "complete"
)

// step is what one guarded request did, for its log line.
type step struct {
	phase, id, txid string
	outcome         string
	piCalls         int
	piTime          time.Duration
}

// pi runs one Pi API call and accounts for its latency.
func (s *step) pi(call func() (*piclient.Payment, error)) (*piclient.Payment, error) {
	start := time.Now()
	p, err := call()
	s.piTime += time.Since(start)
	s.piCalls++
	return p, err
}

// ServeHTTP strips any client-sent copy of the guard's headers from every
// request, then handles the payment routes and passes everything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.stripHeaders(r.Header)

	var phase string
	switch r.URL.Path {
	case h.ApprovePath:
		phase = phaseApprove
	case h.CompletePath:
		phase = phaseComplete
	default:
		return next.ServeHTTP(w, r)
	}

	start := time.Now()
	st := &step{phase: phase}
	payment, body, gerr := h.guard(w, r, st)
	if gerr != nil {
		st.outcome = gerr.Code
		h.logStep(st, start, gerr)
		if errors.Is(gerr.cause, context.Canceled) && r.Context().Err() != nil {
			return nil // the client went away; nobody to answer
		}
		writeError(w, gerr)
		return nil
	}
	h.logStep(st, start, nil)

	if phase == phaseApprove {
		if h.RespondApprove {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			return json.NewEncoder(w).Encode(map[string]any{"approved": true, "paymentId": payment.Identifier})
		}
		token, err := h.signer.Sign(verify.KindNotice, phase, payment, verify.Binding{Method: r.Method, Path: r.URL.Path, Body: body}, "")
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		r.Header.Set(h.NoticeHeader, token)
		return next.ServeHTTP(w, r)
	}
	return h.deliver(w, r, next, payment, body)
}

// stripHeaders removes every incoming copy of the guard's headers, including
// spellings with underscores, which CGI, WSGI and PHP apps read as the same
// header.
func (h *Handler) stripHeaders(hdr http.Header) {
	for name := range hdr {
		if sameHeader(name, h.Header) || sameHeader(name, h.NoticeHeader) {
			delete(hdr, name)
		}
	}
}

// sameHeader compares header names case-insensitively, with '_' and '-' equal.
func sameHeader(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if x|0x20 != y|0x20 {
			return false
		}
	}
	return true
}

// guard reads and checks the callback, holds the payment's locks and runs the
// phase's Pi conversation, recording what Pi said. It returns the payment as
// Pi last reported it and the request body, restored on r, or the refusal to
// answer.
func (h *Handler) guard(w http.ResponseWriter, r *http.Request, st *step) (*piclient.Payment, []byte, *guardError) {
	if r.Method != http.MethodPost {
		return nil, nil, refuse(http.StatusMethodNotAllowed, "method_not_allowed", "%s accepts POST only", r.URL.Path)
	}
	body, err := readBody(w, r, h.MaxBody)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, nil, refuse(http.StatusRequestEntityTooLarge, "body_too_large", "the request body is larger than %d bytes", h.MaxBody)
		}
		ge := refuse(http.StatusBadRequest, "bad_body", "the request body could not be read")
		ge.cause = err
		return nil, nil, ge
	}
	cb, err := parseCallback(r.Header.Get("Content-Type"), body)
	if err != nil {
		if errors.Is(err, errUnsupportedMedia) {
			return nil, nil, refuse(http.StatusUnsupportedMediaType, "unsupported_media_type", "%v", err)
		}
		return nil, nil, refuse(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if err := piclient.ValidatePaymentID(cb.PaymentID); err != nil {
		return nil, nil, refuse(http.StatusBadRequest, "invalid_payment_id", "paymentId: %v", err)
	}
	st.id = cb.PaymentID
	if st.phase == phaseComplete {
		if err := piclient.ValidateTxID(cb.TxID); err != nil {
			return nil, nil, refuse(http.StatusBadRequest, "invalid_txid", "txid: %v", err)
		}
		st.txid = cb.TxID
	}

	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(h.Timeout))
	defer cancel()
	unlock, ge := h.lockPayment(ctx, st.id)
	if ge != nil {
		return nil, nil, ge
	}
	defer unlock()
	rec, err := h.store.load(ctx, st.id)
	if err != nil {
		return nil, nil, storageFailure(err, st.id)
	}

	var p *piclient.Payment
	if st.phase == phaseApprove {
		p, ge = h.approve(ctx, st)
		if ge == nil && rec == nil {
			rec = &record{PaymentID: st.id, Phase: phaseApprove, Payment: p}
			if err := h.store.save(ctx, rec); err != nil {
				// Approval needs no durability: the complete phase re-reads Pi.
				h.logger.Warn("could not record approval", zap.String("payment_id", st.id), zap.Error(err))
			}
		}
	} else {
		p, ge = h.completeRecorded(ctx, st, rec, r, body)
	}
	if ge != nil {
		ge.PaymentID = st.id
	}
	return p, body, ge
}

// completeRecorded answers a completion from the record when the guard has
// already seen Pi complete this payment, and otherwise completes it at Pi and
// records the result before anything is forwarded.
func (h *Handler) completeRecorded(ctx context.Context, st *step, rec *record, r *http.Request, body []byte) (*piclient.Payment, *guardError) {
	if rec.completed() {
		if rec.TxID != st.txid {
			return nil, refuse(http.StatusConflict, "txid_mismatch", "the txid is not this payment's transaction")
		}
		st.outcome = "replayed"
		return rec.Payment, nil
	}
	var known *piclient.Payment
	if rec != nil && rec.Phase == phaseApprove {
		known = rec.Payment
	}
	p, ge := h.complete(ctx, st, known)
	if ge != nil {
		return nil, ge
	}
	if rec == nil {
		rec = &record{PaymentID: st.id}
	}
	rec.Phase, rec.TxID, rec.Payment = phaseComplete, st.txid, p
	rec.Request = newStoredRequest(r, body)
	rec.Delivery = delivery{State: deliveryPending, NextAttempt: time.Now().Add(h.deliveryGrace())}
	if err := h.store.save(ctx, rec); err != nil {
		// Pi has completed the payment: delivering it now is the app's best
		// chance to hear of it, record or not.
		h.logger.Error("could not record a completed payment; delivering it without a record",
			zap.String("payment_id", st.id), zap.Error(err))
	}
	return p, nil
}

// lockPayment serialises work on one payment: first in this process, then
// across instances through the storage lock.
func (h *Handler) lockPayment(ctx context.Context, id string) (func(), *guardError) {
	unlockLocal, err := h.locks.Lock(ctx, id)
	if err != nil {
		return nil, piFailure(err, id)
	}
	unlockShared, err := h.store.lock(ctx, id)
	if err != nil {
		unlockLocal()
		return nil, storageFailure(err, id)
	}
	return func() { unlockShared(); unlockLocal() }, nil
}

// logStep writes one line per guarded request: payment id, phase, outcome and
// the time spent waiting for Pi. Secrets are never logged.
func (h *Handler) logStep(st *step, start time.Time, err error) {
	fields := []zap.Field{
		zap.String("phase", st.phase),
		zap.String("payment_id", st.id),
		zap.String("outcome", st.outcome),
		zap.Int("pi_calls", st.piCalls),
		zap.Duration("pi_latency", st.piTime),
		zap.Duration("duration", time.Since(start)),
	}
	if st.txid != "" {
		fields = append(fields, zap.String("txid", st.txid))
	}
	var ge *guardError
	switch {
	case err == nil:
		h.logger.Info("payment step", fields...)
	case errors.As(err, &ge) && ge.Status < 500:
		h.logger.Warn("payment refused", append(fields, zap.String("message", ge.Message), zap.NamedError("cause", ge.cause))...)
	default:
		h.logger.Error("payment failed", append(fields, zap.Error(err))...)
	}
}
