package piguard

import (
	"context"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// deliver forwards a completed payment's request to the app with a fresh
// verified header and records whether the app accepted it (a 2xx answer).
// The payment's locks are held. When the app cannot be reached, the client
// gets a clear, retryable error and the record stays owed for redelivery.
func (h *Handler) deliver(ctx context.Context, st *step, rec *record, x *exchange) error {
	token, err := h.signer.Sign(verify.KindVerified, st.phase, rec.Payment, verify.Binding{Method: x.r.Method, Path: x.r.URL.Path, Body: x.body}, st.uid)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	x.r.Header.Set(h.Header, token)
	h.metrics.verified.WithLabelValues(st.phase).Inc()

	sw := &statusWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: x.w}}
	err = st.forward(x, sw)
	status := sw.status
	if status == 0 && err == nil {
		status = http.StatusOK // nothing written: Caddy answers 200
	}
	accepted := err == nil && status >= 200 && status < 300
	why := ""
	if !accepted {
		why = http.StatusText(status)
		if err != nil {
			why = err.Error()
		}
	}
	switch {
	case accepted && rec.Delivery.State == deliveryDelivered:
		// A replay of a payment the app already has: nothing to record.
	case accepted:
		// Not needed for safety (a lost mark means a duplicate delivery,
		// which the app must take anyway), so off the request's path.
		h.background.Add(1)
		go func() {
			defer h.background.Done()
			h.markDelivered(rec.PaymentID)
		}()
	default:
		h.recordDelivery(ctx, rec, false, why)
	}

	if err != nil && sw.status == 0 {
		ge := refuse(http.StatusBadGateway, "upstream_unavailable",
			"the payment is complete at Pi, but the app could not be reached; it will be delivered again, and retrying this request is safe")
		ge.Retryable, ge.cause = true, err
		return ge
	}
	return err
}

// markDelivered records, in the background, that the app accepted a
// payment. It takes the payment's locks, so it runs once the request that
// delivered it has released them.
func (h *Handler) markDelivered(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(h.Timeout))
	defer cancel()
	unlock, ge := h.lockPayment(ctx, id)
	if ge != nil {
		h.logger.Warn("could not record a delivery; the payment may be delivered again", zap.String("payment_id", id), zap.Error(ge))
		return
	}
	defer unlock()
	rec, err := h.store.load(ctx, id)
	if err != nil || rec == nil || !rec.completed() || rec.Delivery.State == deliveryDelivered {
		return
	}
	h.recordDelivery(ctx, rec, true, "")
}

// recordDelivery saves the outcome of a delivery attempt made while the
// payment's locks are held. Delivered is final.
func (h *Handler) recordDelivery(ctx context.Context, rec *record, accepted bool, why string) {
	if rec.Delivery.State == deliveryDelivered && !accepted {
		return
	}
	h.applyAttempt(rec, accepted, why)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
	defer cancel()
	if err := h.store.save(ctx, rec); err != nil {
		h.logger.Error("could not update the delivery record", zap.String("payment_id", rec.PaymentID), zap.Error(err))
	}
}

// applyAttempt records the outcome of one delivery attempt on rec.
func (h *Handler) applyAttempt(rec *record, accepted bool, why string) {
	d := &rec.Delivery
	now := time.Now().UTC()
	if accepted {
		d.State, d.DeliveredAt, d.NextAttempt, d.LastError = deliveryDelivered, now, time.Time{}, ""
		return
	}
	if d.State == deliveryDelivered {
		return
	}
	d.Attempts++
	d.LastError = why
	if d.Attempts >= h.RedeliverAttempts {
		d.State, d.NextAttempt = deliveryExhausted, time.Time{}
		h.metrics.exhausted.Inc()
		h.logger.Error("payment completed at Pi but the app never accepted it: redelivery attempts exhausted; the operator must deliver it",
			zap.String("payment_id", rec.PaymentID), zap.String("txid", rec.TxID), zap.Int("attempts", d.Attempts), zap.String("last_error", why))
		return
	}
	d.State, d.NextAttempt = deliveryPending, now.Add(h.backoff(d.Attempts))
}

// backoff is the wait before redelivery attempt n+1: the base doubled per
// failed attempt, at most maxRedeliverBackoff.
func (h *Handler) backoff(failed int) time.Duration {
	d := time.Duration(h.RedeliverBackoff)
	for i := 1; i < failed && d < maxRedeliverBackoff; i++ {
		d *= 2
	}
	return min(d, maxRedeliverBackoff)
}

// deliveryGrace is how long a freshly completed payment's record waits before
// the redelivery worker may take it: the in-request delivery goes first.
func (h *Handler) deliveryGrace() time.Duration {
	return max(2*time.Duration(h.RedeliverBackoff), time.Duration(h.Timeout))
}

// statusWriter remembers the status the app answered with.
type statusWriter struct {
	*caddyhttp.ResponseWriterWrapper
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriterWrapper.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriterWrapper.Write(b)
}
