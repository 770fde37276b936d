package piguard

import (
	"context"
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
	phaseApprove    = verify.PhaseApprove
	phaseComplete   = verify.PhaseComplete
	phaseIncomplete = verify.PhaseIncomplete
	phaseCancel     = verify.PhaseCancel
)

// step is what one guarded request did, for its log line.
type step struct {
	phase, id, txid, uid string
	outcome              string
	piCalls              int
	piTime               time.Duration
	start, ready         time.Time     // ready: the guard's own work is done; forwarding starts
	upstream             time.Duration // time spent in the app (next handler)
}

// forward hands the request to the next handler (the app), timing it.
func (s *step) forward(x *exchange, w http.ResponseWriter) error {
	s.ready = time.Now()
	err := x.next.ServeHTTP(w, x.r)
	s.upstream += time.Since(s.ready)
	return err
}

// pi runs one Pi API call and accounts for its latency.
func (s *step) pi(call func() (*piclient.Payment, error)) (*piclient.Payment, error) {
	start := time.Now()
	p, err := call()
	s.piTime += time.Since(start)
	s.piCalls++
	return p, err
}

// exchange is the request being guarded and where it goes next.
type exchange struct {
	w    http.ResponseWriter
	r    *http.Request
	next caddyhttp.Handler
	body []byte
}

// ServeHTTP strips any client-sent copy of the guard's headers from every
// request, then guards the payment routes and passes everything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.stripHeaders(r.Header)
	phase := h.phaseOf(r.URL.Path)
	if phase == "" {
		if h.JWKSPath != "" && r.URL.Path == h.JWKSPath {
			return h.serveJWKS(w, r)
		}
		return next.ServeHTTP(w, r)
	}
	st := &step{phase: phase, start: time.Now()}
	err := h.serve(w, r, next, st)
	var ge *guardError
	if errors.As(err, &ge) {
		st.outcome = ge.Code
		h.logStep(st, ge)
		if errors.Is(ge.cause, context.Canceled) && r.Context().Err() != nil {
			return nil // the client went away; nobody to answer
		}
		ge.PaymentID = st.id
		writeError(w, ge)
		return nil
	}
	h.logStep(st, err)
	return err
}

func (h *Handler) phaseOf(path string) string {
	switch path {
	case h.ApprovePath:
		return phaseApprove
	case h.CompletePath:
		return phaseComplete
	case h.IncompletePath:
		return phaseIncomplete
	case h.CancelPath:
		return phaseCancel
	}
	return ""
}

// serve reads and checks the callback, takes the payment's lock (held until
// the app has answered, so duplicates queue instead of racing) and runs the
// phase. Completions also take the cross-instance storage lock and read the
// payment's record; approvals and cancellations change nothing that a
// duplicate on another instance could double, so they lock in-process only.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, st *step) error {
	body, ge := h.readCallback(w, r, st)
	if ge != nil {
		return ge
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(h.Timeout))
	defer cancel()
	if h.users != nil {
		if st.uid, ge = h.users.authenticate(ctx, r, st); ge != nil {
			return ge
		}
	}
	x := &exchange{w: w, r: r, next: next, body: body}
	if st.phase == phaseApprove || st.phase == phaseCancel {
		unlock, err := h.locks.Lock(ctx, st.id)
		if err != nil {
			return piFailure(err, st.id)
		}
		defer unlock()
		if st.phase == phaseApprove {
			return h.serveApprove(ctx, st, x)
		}
		return h.serveCancel(ctx, st, x)
	}
	unlock, ge := h.lockPayment(ctx, st.id)
	if ge != nil {
		return ge
	}
	defer unlock()
	rec, err := h.store.load(ctx, st.id)
	if err != nil {
		return storageFailure(err, st.id)
	}
	switch st.phase {
	case phaseComplete:
		return h.serveComplete(ctx, st, rec, x)
	default:
		return h.serveIncomplete(ctx, st, rec, x)
	}
}

// readCallback checks the method, reads the body (bounded, restored on r)
// and validates the payment id, and the txid on the complete route.
func (h *Handler) readCallback(w http.ResponseWriter, r *http.Request, st *step) ([]byte, *guardError) {
	if r.Method != http.MethodPost {
		return nil, refuse(http.StatusMethodNotAllowed, "method_not_allowed", "%s accepts POST only", r.URL.Path)
	}
	body, err := readBody(w, r, h.MaxBody)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, refuse(http.StatusRequestEntityTooLarge, "body_too_large", "the request body is larger than %d bytes", h.MaxBody)
		}
		ge := refuse(http.StatusBadRequest, "bad_body", "the request body could not be read")
		ge.cause = err
		return nil, ge
	}
	cb, err := parseCallback(r.Header.Get("Content-Type"), body)
	if err != nil {
		if errors.Is(err, errUnsupportedMedia) {
			return nil, refuse(http.StatusUnsupportedMediaType, "unsupported_media_type", "%v", err)
		}
		return nil, refuse(http.StatusBadRequest, "bad_request", "%v", err)
	}
	id, err := cb.id()
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if err := piclient.ValidatePaymentID(id); err != nil {
		return nil, refuse(http.StatusBadRequest, "invalid_payment_id", "paymentId: %v", err)
	}
	st.id = id
	if st.phase == phaseComplete {
		if err := piclient.ValidateTxID(cb.TxID); err != nil {
			return nil, refuse(http.StatusBadRequest, "invalid_txid", "txid: %v", err)
		}
		// Pi and Horizon write txids in lower case; so does the guard, in
		// comparisons, records and URLs.
		st.txid = piclient.NormalizeTxID(cb.TxID)
	}
	return body, nil
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

// logStep counts the request in the metrics and writes its log line: payment
// id, phase, outcome, the time spent waiting for Pi, the time until the
// request was forwarded (duration), the time in the app (upstream) and the
// whole request (total); the guard's own time is total - pi_latency -
// upstream. Secrets are never logged.
func (h *Handler) logStep(st *step, err error) {
	switch {
	case st.outcome != "":
	case err != nil:
		st.outcome = "error"
	default:
		st.outcome = "ok"
	}
	h.metrics.requests.WithLabelValues(st.phase, st.outcome).Inc()
	now := time.Now()
	ready := st.ready
	if ready.IsZero() {
		ready = now
	}
	fields := []zap.Field{
		zap.String("phase", st.phase),
		zap.String("payment_id", st.id),
		zap.String("outcome", st.outcome),
		zap.Int("pi_calls", st.piCalls),
		zap.Duration("pi_latency", st.piTime),
		zap.Duration("duration", ready.Sub(st.start)),
		zap.Duration("upstream", st.upstream),
		zap.Duration("total", now.Sub(st.start)),
	}
	if st.txid != "" {
		fields = append(fields, zap.String("txid", st.txid))
	}
	if st.uid != "" {
		fields = append(fields, zap.String("user_uid", st.uid))
	}
	var ge *guardError
	switch {
	case err == nil:
		h.logger.Info("payment step", fields...)
	case errors.As(err, &ge) && ge.Status < 500:
		h.logger.Warn("payment refused", append(fields, zap.String("error", ge.Code), zap.String("message", ge.Message), zap.NamedError("cause", ge.cause))...)
	case errors.As(err, &ge):
		h.logger.Error("payment failed", append(fields, zap.String("error", ge.Code), zap.String("message", ge.Message), zap.NamedError("cause", ge.cause))...)
	default:
		h.logger.Error("payment failed", append(fields, zap.String("error", "internal"), zap.Error(err))...)
	}
}
