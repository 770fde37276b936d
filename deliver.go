package piguard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// deliver forwards a completed payment's request to the app with a fresh
// verified header bound to exactly what is forwarded, and records whether
// the app accepted it (a 2xx answer). The payment's locks are held.
//
// The first delivery by the payer forwards the live request as recorded;
// otherwise (a replay, or a completion by someone else) the record's stored
// request goes, never the client's body, query, cookies or headers. The
// app's answer reaches only the payer (see isPayer): anyone else gets the
// guard's own answer, and their replays do not reach the app at all.
//
// The forward takes at most timeout. Only a 2xx answer reaches the client;
// any other answer is held back and the client gets the guard's JSON error
// (retryable): the payment stays owed and is delivered again.
func (h *Handler) deliver(ctx context.Context, st *step, rec *ledger.Record, x *exchange, replay bool) error {
	// The app's answer goes only to the payer: payment ids and txids are
	// public (a txid is on the blockchain, with the payment id as its memo),
	// and the app's answer to a completion may be the goods themselves.
	answer := h.isPayer(st, rec, x.r)
	if replay && !answer && !h.clientsRedeliver(rec) {
		// A stranger's replay does not reach the app: the app has the
		// payment, or the redelivery worker and the payer's own retries
		// deliver it on their schedule, which no stranger can speed up.
		st.outcome = "replayed_not_forwarded"
		h.allowOrigin(x.w, x.r)
		return writeCompleted(x.w, rec, true, rec.Delivery.State == ledger.Delivered)
	}
	sr := deliverable(rec, h.CompletePath)
	fctx, cancel := context.WithTimeout(x.r.Context(), time.Duration(h.Timeout))
	defer cancel()
	out := outgoing(fctx, x.r, sr, replay || !answer)
	phase := st.phase
	if replay {
		if phase = h.phaseOf(sr.Path); phase == "" {
			phase = phaseComplete
		}
	}
	token, err := h.signer.Sign(verify.KindVerified, phase, rec.Payment, verify.Binding{Method: out.Method, Path: out.URL.Path, Body: sr.Body}, st.uid)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	out.Header.Set(h.Header, token)
	h.metrics.verifiedForward(st.phase)

	rr := caddyhttp.NewResponseRecorder(newHeldWriter(x.w), new(bytes.Buffer), func(status int, _ http.Header) bool { return !answer || !is2xx(status) })
	err = st.forward(&exchange{w: x.w, r: out, next: x.next, body: sr.Body}, rr)
	status := rr.Status()
	if status == 0 && err == nil {
		status = http.StatusOK // nothing written: Caddy answers 200
	}
	if is2xx(status) {
		switch {
		case rec.Delivery.State == ledger.Delivered:
			// A replay of a payment the app already has: nothing to record.
		default:
			// Not needed for safety (a lost mark means a duplicate delivery,
			// which the app must take anyway), so after the client's answer,
			// still under the payment's locks (see Handler.release).
			st.then = func() { h.recordDelivery(ctx, rec, true, "", false) }
		}
		if !answer {
			st.outcome += "_answer_withheld"
			h.allowOrigin(x.w, x.r)
			return writeCompleted(x.w, rec, replay, true) // the app just accepted it
		}
		return err // the app's answer is on its way to the client
	}

	code, why, what := "upstream_unavailable", fmt.Sprintf("the app could not be reached: %v", err), "could not be reached or did not answer in time"
	if status != 0 {
		code, why, what = "upstream_refused", fmt.Sprintf("the app answered HTTP %d", status), fmt.Sprintf("answered HTTP %d and did not accept it", status)
	}
	owed := "the app already accepted this payment before; retrying this request is safe"
	if rec.Delivery.State != ledger.Delivered {
		h.recordDelivery(ctx, rec, false, why, false)
		h.logRefusedDelivery(rec, why, "client")
		switch {
		case rec.Delivery.State == ledger.Exhausted:
			owed = "it stays owed (redelivery is exhausted: the site operator must act), and retrying this request is safe"
		case h.redeliverURL == nil:
			owed = "it stays owed, and retrying this request delivers it again"
		default:
			owed = "it stays owed and will be delivered again, and retrying this request is safe"
		}
		if rec.Unsaved {
			owed += " (the guard could not write its record to storage and keeps it in memory until it can)"
		}
	}
	ge := refuse(http.StatusBadGateway, code, "the payment is complete at Pi, but the app %s; %s", what, owed)
	ge.Retryable, ge.cause = true, err
	return ge
}

// clientsRedeliver reports whether anyone's replay of rec delivers it now:
// without redeliver_to, client retries are the only redelivery, and the
// payer may be one the guard cannot recognise (an approval made elsewhere),
// so a due delivery goes, at most once per backoff step (see applyAttempt).
func (h *Handler) clientsRedeliver(rec *ledger.Record) bool {
	return h.redeliverURL == nil && rec.Delivery.State == ledger.Pending && !time.Now().Before(rec.Delivery.NextAttempt)
}

// outgoing is the request to forward for sr, with ctx: the live request
// with sr's method, path, host and body, the path in its plain encoding and
// no query string, so that the app sees exactly the path and body the token
// binds and nothing unbound. A stored request (a replay, or a completion by
// someone other than the payer) also carries only sr's kept headers.
func outgoing(ctx context.Context, live *http.Request, sr *ledger.Request, stored bool) *http.Request {
	out := live.Clone(ctx)
	out.Method = sr.Method
	out.URL.Path, out.URL.RawPath, out.URL.RawQuery, out.URL.ForceQuery = sr.Path, "", "", false
	if stored {
		// The payer's host, or none (the app's own address): never a host
		// the client sending this request picked.
		out.Host = sr.Host
		out.Header = keptHeader(sr)
	} else if sr.Host != "" {
		out.Host = sr.Host
	}
	out.Trailer = nil // the body was read whole; nothing follows it
	setBody(out, sr.Body)
	return out
}

// logRefusedDelivery logs a delivery attempt the app did not accept, with
// the wait until the next background attempt when there is one.
func (h *Handler) logRefusedDelivery(rec *ledger.Record, why, by string) {
	fields := []zap.Field{zap.String("payment_id", rec.PaymentID), zap.String("txid", rec.TxID), zap.String("by", by),
		zap.String("error", why), zap.Int("background_attempts", rec.Delivery.Attempts), zap.String("state", rec.Delivery.State)}
	if rec.Unsaved {
		fields = append(fields, zap.Bool("in_memory_only", true))
	}
	switch {
	case rec.Delivery.State == ledger.Exhausted:
		h.logger.Error("the app did not accept a completed payment and redelivery is exhausted; the operator must deliver it", fields...)
		return
	case h.redeliverURL == nil:
		fields = append(fields, zap.String("next_attempt", "when the client retries (redeliver_to is not set)"))
	case !rec.Delivery.NextAttempt.IsZero():
		fields = append(fields, zap.Duration("retry_in", max(time.Until(rec.Delivery.NextAttempt), 0)))
	}
	h.logger.Warn("the app did not accept a completed payment; it stays owed", fields...)
}

// recordDelivery saves the outcome of a delivery attempt made while the
// payment's locks are held. Delivered is final. background tells a
// redelivery worker's attempt from a client's.
func (h *Handler) recordDelivery(ctx context.Context, rec *ledger.Record, accepted bool, why string, background bool) {
	if rec.Delivery.State == ledger.Delivered && !accepted {
		return
	}
	h.applyAttempt(rec, accepted, why, background)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
	defer cancel()
	if err := h.store.Save(ctx, rec); err != nil {
		h.logger.Error("could not write the delivery record", zap.String("payment_id", rec.PaymentID), zap.Error(err))
	}
}

// applyAttempt records the outcome of one delivery attempt on rec.
//
// Only background attempts (the redelivery worker's) count towards
// redeliver_attempts and can exhaust a delivery. A client's attempt (the
// first delivery, or a replay) that fails only brings the next background
// attempt forward to one backoff step from now, never later than it was.
func (h *Handler) applyAttempt(rec *ledger.Record, accepted bool, why string, background bool) {
	d := &rec.Delivery
	now := time.Now().UTC()
	if accepted {
		d.State, d.DeliveredAt, d.NextAttempt, d.LastError = ledger.Delivered, now, time.Time{}, ""
		return
	}
	if d.State == ledger.Delivered {
		return
	}
	d.LastError = why
	if !background {
		if d.State != ledger.Exhausted {
			d.State = ledger.Pending
			next := now.Add(h.backoff(max(d.Attempts, 1)))
			// Without a worker, clients' retries are the redelivery: a due
			// one that failed waits a backoff step, so that no flood of
			// retries reaches a failing app more often.
			behind := h.redeliverURL == nil && !d.NextAttempt.After(now)
			if d.NextAttempt.IsZero() || next.Before(d.NextAttempt) || behind {
				d.NextAttempt = next
			}
		}
		return
	}
	d.Attempts++
	if d.Attempts >= h.RedeliverAttempts {
		d.State, d.NextAttempt = ledger.Exhausted, time.Time{}
		h.metrics.exhausted.Inc()
		h.logger.Error("payment completed at Pi but the app never accepted it: redelivery attempts exhausted; the operator must deliver it",
			zap.String("payment_id", rec.PaymentID), zap.String("txid", rec.TxID), zap.Int("attempts", d.Attempts), zap.String("last_error", why))
		return
	}
	d.State, d.NextAttempt = ledger.Pending, now.Add(h.backoff(d.Attempts))
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

func is2xx(status int) bool { return status >= 200 && status <= 299 }

// heldWriter gives the next handler a header map of its own and copies it
// onto the real response only when a final answer is written through it.
// An answer that is held back (and replaced by the guard's error) leaves no
// header behind; informational (1xx) answers are dropped.
type heldWriter struct {
	http.ResponseWriter
	header http.Header
	wrote  bool
}

func newHeldWriter(w http.ResponseWriter) *heldWriter {
	hdr := w.Header().Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	return &heldWriter{ResponseWriter: w, header: hdr}
}

// Header returns the held header map, or the real one once written (for
// trailers).
func (hw *heldWriter) Header() http.Header {
	if hw.wrote {
		return hw.ResponseWriter.Header()
	}
	return hw.header
}

// WriteHeader copies the held headers onto the real response and writes a
// final status.
func (hw *heldWriter) WriteHeader(code int) {
	if hw.wrote || code < 200 {
		return
	}
	hw.wrote = true
	dst := hw.ResponseWriter.Header()
	clear(dst)
	maps.Copy(dst, hw.header)
	hw.ResponseWriter.WriteHeader(code)
}

func (hw *heldWriter) Write(b []byte) (int, error) {
	if !hw.wrote {
		hw.WriteHeader(http.StatusOK)
	}
	return hw.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (hw *heldWriter) Unwrap() http.ResponseWriter { return hw.ResponseWriter }

// Interface guards.
var _ http.ResponseWriter = (*heldWriter)(nil)

// callerOf identifies the session a request comes from: a hash of its
// Cookie and Authorization headers, or "" when it has neither.
func callerOf(r *http.Request) string {
	cookies, auth := r.Header.Values("Cookie"), r.Header.Values("Authorization")
	if len(cookies) == 0 && len(auth) == 0 {
		return ""
	}
	h := sha256.New()
	for _, v := range cookies {
		h.Write([]byte("c:" + v + "\n"))
	}
	for _, v := range auth {
		h.Write([]byte("a:" + v + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// writeCompleted answers a client that is not the payment's payer: the
// payment is complete, and whether the app has it; never the app's answer,
// which may be the goods themselves.
func writeCompleted(w http.ResponseWriter, rec *ledger.Record, replay, delivered bool) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	msg := "the payment is complete and the app has received it; the app's answer goes to the payer's own session only"
	if !delivered {
		msg = "the payment is complete; the app has not confirmed it yet and it is delivered again; the app's answer goes to the payer's own session only"
	}
	return json.NewEncoder(w).Encode(completedAnswer{
		PaymentID: rec.PaymentID, TxID: rec.TxID, Completed: true, Replayed: replay, Delivered: delivered,
		Message: msg,
	})
}

// completedAnswer is writeCompleted's answer. Its fields are in the order
// of their names, as encoding/json writes a map's keys.
type completedAnswer struct {
	Completed bool   `json:"completed"`
	Delivered bool   `json:"delivered"`
	Message   string `json:"message"`
	PaymentID string `json:"paymentId"`
	Replayed  bool   `json:"replayed"`
	TxID      string `json:"txid"`
}
