package piguard

import (
	"context"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// deliver forwards a completed payment's request to the upstream with a fresh
// verified header and records whether the app accepted it (a 2xx answer).
// When the app cannot be reached, the client gets a clear, retryable error
// and the record stays owed for redelivery.
func (h *Handler) deliver(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, p *piclient.Payment, body []byte) error {
	token, err := h.signer.Sign(verify.KindVerified, phaseComplete, p, verify.Binding{Method: r.Method, Path: r.URL.Path, Body: body}, "")
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	r.Header.Set(h.Header, token)

	sw := &statusWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err = next.ServeHTTP(sw, r)
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
	h.markDelivery(r.Context(), p.Identifier, accepted, why)

	if err != nil && sw.status == 0 {
		ge := refuse(http.StatusBadGateway, "upstream_unavailable",
			"the payment is complete at Pi, but the app could not be reached; it will be delivered again, and retrying this request is safe")
		ge.Retryable, ge.PaymentID, ge.cause = true, p.Identifier, err
		h.logger.Warn("verified request not delivered", zap.String("payment_id", p.Identifier), zap.Error(err))
		writeError(w, ge)
		return nil
	}
	return err
}

// markDelivery updates a completed payment's record after a delivery attempt.
// Delivered is final: a later failure never turns it back into owed.
func (h *Handler) markDelivery(reqCtx context.Context, id string, accepted bool, why string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(reqCtx), time.Duration(h.Timeout))
	defer cancel()
	unlock, ge := h.lockPayment(ctx, id)
	if ge != nil {
		h.logger.Warn("could not update the delivery record", zap.String("payment_id", id), zap.Error(ge))
		return
	}
	defer unlock()
	rec, err := h.store.load(ctx, id)
	if err != nil || rec == nil || !rec.completed() {
		if err != nil {
			h.logger.Warn("could not update the delivery record", zap.String("payment_id", id), zap.Error(err))
		}
		return
	}
	h.applyAttempt(rec, accepted, why)
	if err := h.store.save(ctx, rec); err != nil {
		h.logger.Error("could not update the delivery record", zap.String("payment_id", id), zap.Error(err))
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

// statusWriter remembers the status the upstream answered with.
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
