package piguard

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// Redelivery defaults.
const (
	DefaultRedeliverAttempts = 10
	DefaultRedeliverBackoff  = 5 * time.Second
	maxRedeliverBackoff      = 15 * time.Minute
)

// redeliverLoop keeps the owed-deliveries gauge current and, with
// redeliver_to set, re-sends owed deliveries to the app, until ctx (the
// module's context, cancelled when the config is unloaded) is done. Several
// instances may run it over one storage: a record is sent only under its
// lock.
func (h *Handler) redeliverLoop(ctx context.Context) {
	interval := min(max(time.Duration(h.RedeliverBackoff)/2, 10*time.Millisecond), 5*time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.redeliverOnce(ctx)
		}
	}
}

// redeliverOnce makes one pass over the owed deliveries: it counts them by
// state and sends those that are due.
func (h *Handler) redeliverOnce(ctx context.Context) {
	ids, err := h.store.owed(ctx)
	if err != nil {
		h.logger.Warn("could not list owed deliveries", zap.Error(err))
		return
	}
	counts := map[string]float64{deliveryPending: 0, deliveryExhausted: 0}
	now := time.Now()
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		rec, err := h.store.load(ctx, id)
		if err != nil || rec == nil {
			continue
		}
		counts[rec.Delivery.State]++
		if h.redeliverURL != nil && rec.Delivery.State == deliveryPending && !now.Before(rec.Delivery.NextAttempt) {
			h.redeliver(ctx, id)
		}
	}
	for state, n := range counts {
		h.metrics.owed.WithLabelValues(state).Set(n)
	}
}

// redeliver sends one owed delivery if it is still due and no one else
// holds it.
func (h *Handler) redeliver(ctx context.Context, id string) {
	unlockLocal, err := h.locks.Lock(ctx, id)
	if err != nil {
		return
	}
	defer unlockLocal()
	unlock, ok := h.store.tryLock(ctx, id, time.Second)
	if !ok {
		return // another instance is working on it
	}
	defer unlock()
	rec, err := h.store.load(ctx, id)
	if err != nil || rec == nil || !rec.completed() || rec.Request == nil ||
		rec.Delivery.State != deliveryPending || time.Now().Before(rec.Delivery.NextAttempt) {
		return
	}
	status, sendErr := h.send(ctx, rec)
	accepted := sendErr == nil && status >= 200 && status < 300
	why := ""
	switch {
	case sendErr != nil:
		why = sendErr.Error()
	case !accepted:
		why = fmt.Sprintf("HTTP %d", status)
	}
	result := "failed"
	if accepted {
		result = "delivered"
	}
	h.metrics.redeliveries.WithLabelValues(result).Inc()
	h.applyAttempt(rec, accepted, why)
	if err := h.store.save(ctx, rec); err != nil {
		h.logger.Error("could not update the delivery record", zap.String("payment_id", id), zap.Error(err))
		return
	}
	if accepted {
		h.logger.Info("payment redelivered", zap.String("payment_id", id), zap.Int("failed_attempts", rec.Delivery.Attempts))
	} else {
		h.logger.Warn("payment redelivery failed", zap.String("payment_id", id), zap.Int("attempts", rec.Delivery.Attempts),
			zap.String("error", why), zap.Time("next_attempt", rec.Delivery.NextAttempt))
	}
}

// send re-sends the stored request to redeliver_to with a fresh verified
// header, and returns the app's status.
func (h *Handler) send(ctx context.Context, rec *record) (int, error) {
	sr := rec.Request
	token, err := h.signer.Sign(verify.KindVerified, phaseComplete, rec.Payment, verify.Binding{Method: sr.Method, Path: sr.Path, Body: sr.Body}, "")
	if err != nil {
		return 0, err
	}
	target := *h.redeliverURL
	target.Path = h.redeliverURL.Path + sr.Path
	target.RawQuery = sr.Query
	actx, cancel := context.WithTimeout(ctx, time.Duration(h.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(actx, sr.Method, target.String(), bytes.NewReader(sr.Body))
	if err != nil {
		return 0, err
	}
	for k, v := range sr.Header {
		req.Header[k] = append([]string(nil), v...)
	}
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

// parseRedeliverURL checks redeliver_to: an absolute http(s) URL of the app.
func parseRedeliverURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("redeliver_to %q must be the app's base URL, such as http://127.0.0.1:3000", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u, nil
}
