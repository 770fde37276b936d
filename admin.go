package piguard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// live is every provisioned pi_guard handler, for the admin API.
var live sync.Map // *Handler → struct{}

// adminAPI serves the pi_guard routes of Caddy's admin endpoint:
//
//	GET  /pi_guard/deliveries[?state=pending|exhausted]  the payments whose delivery to the app is owed
//	POST /pi_guard/deliveries/{id}/retry                 send an owed delivery again now, with a fresh attempt budget
//	POST /pi_guard/deliveries/{id}/resolve {"note": ...} the operator delivered it by other means: settle the record
//	POST /pi_guard/payments/{id}/unblock                 complete or cancel at Pi a payment that blocks its user (unblock.go)
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.pi_guard",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes.
func (adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/pi_guard/deliveries", Handler: caddy.AdminHandlerFunc(serveDeliveries)},
		{Pattern: "/pi_guard/deliveries/", Handler: caddy.AdminHandlerFunc(serveDeliveryAction)},
		{Pattern: "/pi_guard/payments/", Handler: caddy.AdminHandlerFunc(serveUnblock)},
	}
}

// owedDelivery is one row of the admin listing, and the answer to retry and
// resolve.
type owedDelivery struct {
	PaymentID string `json:"payment_id"`
	TxID      string `json:"txid"`
	// Amount is the exact decimal amount in canonical form (the header's
	// amount_text: "4" for Pi's 4.0).
	Amount      string    `json:"amount"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Path        string    `json:"path,omitempty"`
	// Completed is when the guard saw Pi complete the payment.
	Completed   time.Time `json:"completed"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
}

func rowOf(rec *ledger.Record) owedDelivery {
	row := owedDelivery{PaymentID: rec.PaymentID, TxID: rec.TxID, State: rec.Delivery.State, Attempts: rec.Delivery.Attempts,
		NextAttempt: rec.Delivery.NextAttempt, LastError: rec.Delivery.LastError, Completed: rec.CompletionTime(), DeliveredAt: rec.Delivery.DeliveredAt}
	if rec.Payment != nil {
		// The exact decimal, as the header's amount_text: "4", not Pi's 4.0.
		row.Amount = verify.AmountText(rec.Payment.Amount)
	}
	if rec.Request != nil {
		row.Path = rec.Request.Path
	}
	return row
}

// stores returns one live handler per record store (handlers with the same
// API key and the same storage share one), preferring a handler that can
// redeliver.
func stores() []*Handler {
	byPrefix := map[string]*Handler{}
	var order []string
	live.Range(func(k, _ any) bool {
		h := k.(*Handler)
		key := h.store.ID()
		prev, seen := byPrefix[key]
		if !seen {
			order = append(order, key)
		}
		if !seen || (prev.redeliverURL == nil && h.redeliverURL != nil) {
			byPrefix[key] = h
		}
		return true
	})
	sort.Strings(order)
	out := make([]*Handler, len(order))
	for i, p := range order {
		out[i] = byPrefix[p]
	}
	return out
}

func serveDeliveries(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Message: "GET only: GET /pi_guard/deliveries lists owed deliveries"}
	}
	want := r.URL.Query().Get("state")
	if want != "" && want != ledger.Pending && want != ledger.Exhausted {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Message: fmt.Sprintf("state %q is unknown: use pending or exhausted, or leave it out for both", want)}
	}
	out := []owedDelivery{}
	for _, h := range stores() {
		ids, err := h.store.Owed(r.Context())
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err, Message: "reading payment records: " + err.Error()}
		}
		for _, id := range ids {
			rec, err := h.store.Load(r.Context(), id)
			if err != nil || rec == nil || (want != "" && rec.Delivery.State != want) {
				continue
			}
			out = append(out, rowOf(rec))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Completed.Before(out[j].Completed) })
	return writeJSON(w, http.StatusOK, out)
}

// maxNoteBytes bounds the note of a resolve.
const maxNoteBytes = 1000

// serveDeliveryAction serves POST /pi_guard/deliveries/{id}/retry and
// /resolve.
func serveDeliveryAction(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/pi_guard/deliveries/")
	id, action, ok := strings.Cut(rest, "/")
	if !ok || (action != "retry" && action != "resolve") {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Message: "unknown route: use POST /pi_guard/deliveries/{paymentId}/retry or /resolve, or GET /pi_guard/deliveries"}
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Message: action + " takes POST"}
	}
	if err := piclient.ValidatePaymentID(id); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Message: fmt.Sprintf("%q is not a payment id: %v", id, err)}
	}
	var note string
	if action == "resolve" {
		var err error
		if note, err = readNote(r); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Message: err.Error()}
		}
	}
	h, err := ownerOf(r.Context(), id)
	if err != nil {
		return err
	}
	if action == "retry" {
		return retryDelivery(r.Context(), w, h, id)
	}
	return resolveDelivery(r.Context(), w, h, id, note)
}

// readNote reads the body of a resolve: {"note": "what the operator did"}.
func readNote(r *http.Request) (string, error) {
	var body struct {
		Note string `json:"note"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4*maxNoteBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return "", fmt.Errorf(`resolve needs a JSON body {"note": "how the payment was delivered"}: %v`, err)
	}
	note := strings.TrimSpace(body.Note)
	switch {
	case note == "":
		return "", errors.New(`resolve needs a note saying how the payment reached the app, e.g. {"note": "order 42 marked paid by hand"}`)
	case len(note) > maxNoteBytes:
		return "", fmt.Errorf("the note is %d bytes; keep it under %d", len(note), maxNoteBytes)
	case strings.IndexFunc(note, unicode.IsControl) >= 0:
		return "", errors.New("the note must be one line of text, without control characters")
	}
	return note, nil
}

// ownerOf finds the handler whose store holds a record of payment id.
func ownerOf(ctx context.Context, id string) (*Handler, error) {
	var found []*Handler
	for _, h := range stores() {
		rec, err := h.store.Load(ctx, id)
		if err != nil {
			return nil, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err, Message: "reading payment records: " + err.Error()}
		}
		if rec != nil {
			found = append(found, h)
		}
	}
	switch len(found) {
	case 0:
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Message: fmt.Sprintf("no pi_guard record of payment %s: nothing is owed (the guard never saw Pi complete it; GET /pi_guard/deliveries lists what is owed)", id)}
	case 1:
		return found[0], nil
	}
	return nil, caddy.APIError{HTTPStatus: http.StatusConflict, Message: fmt.Sprintf("payment %s has records under %d API keys; settle it in storage by hand", id, len(found))}
}

// settle takes the payment's locks, loads its record and checks that its
// delivery is owed, then calls change on it; the record is saved when change
// returns nil.
func settle(ctx context.Context, h *Handler, id string, change func(*ledger.Record) error) (*ledger.Record, error) {
	unlock, ge := h.lockPayment(ctx, id)
	if ge != nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: ge, Message: "taking the payment's lock: " + ge.Error()}
	}
	defer unlock()
	rec, err := h.store.Load(ctx, id)
	if err != nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err, Message: err.Error()}
	}
	if rec == nil || (rec.Delivery.State != ledger.Pending && rec.Delivery.State != ledger.Exhausted) {
		msg := fmt.Sprintf("nothing is owed: payment %s is not pending or exhausted", id)
		if rec != nil && rec.Delivery.State == ledger.Delivered {
			msg = fmt.Sprintf("nothing is owed: payment %s was delivered, or resolved by an operator (at %s)", id, rec.Delivery.DeliveredAt.UTC().Format(time.RFC3339))
		}
		return nil, caddy.APIError{HTTPStatus: http.StatusConflict, Message: msg}
	}
	if err := change(rec); err != nil {
		return nil, err
	}
	if err := h.store.Save(ctx, rec); err != nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err, Message: err.Error()}
	}
	return rec, nil
}

// retryResult is the answer to a retry.
type retryResult struct {
	// Result is "delivered" (the app answered 2xx), "failed" (it did not;
	// the record is pending with a fresh budget and the worker goes on) or
	// "queued" (another worker holds the payment; it is due now).
	Result   string       `json:"result"`
	Delivery owedDelivery `json:"delivery"`
}

// retryDelivery puts an owed delivery back to pending with a fresh attempt
// budget, due now, and sends it at once through the redelivery worker's own
// code, under the payment's locks.
func retryDelivery(ctx context.Context, w http.ResponseWriter, h *Handler, id string) error {
	if rec, err := h.store.Load(ctx, id); err == nil && (rec == nil || !rec.Owed()) {
		// Nothing is owed: settle says so (and why) before anything else.
		_, err := settle(ctx, h, id, func(*ledger.Record) error { return nil })
		return err
	}
	if h.redeliverURL == nil {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Message: fmt.Sprintf("cannot send payment %s: this pi_guard has no redeliver_to; "+
			"set redeliver_to to the app's base URL, or deliver it by hand and POST /pi_guard/deliveries/%s/resolve", id, id)}
	}
	var was ledger.Delivery
	_, err := settle(ctx, h, id, func(rec *ledger.Record) error {
		if !rec.Completed() || rec.Request == nil {
			return caddy.APIError{HTTPStatus: http.StatusConflict, Message: fmt.Sprintf("the record of payment %s holds no completed request to send; deliver it by hand and resolve it", id)}
		}
		was = rec.Delivery
		rec.Delivery.State, rec.Delivery.Attempts, rec.Delivery.NextAttempt = ledger.Pending, 0, time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	h.logger.Info("operator retry of an owed delivery", zap.String("payment_id", id),
		zap.String("previous_state", was.State), zap.Int("previous_attempts", was.Attempts))
	// Send it now, unless a request or the worker holds the payment (then the
	// worker sends it on its next pass: it is due now).
	if unlock, ok := h.locks.TryLock(id); ok {
		h.redeliver(ctx, id)
		unlock()
	}

	rec, err := h.store.Load(ctx, id)
	if err != nil || rec == nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Message: fmt.Sprintf("payment %s was queued for redelivery, but its record could not be read back: %v", id, err)}
	}
	res := retryResult{Result: "queued", Delivery: rowOf(rec)}
	switch {
	case rec.Delivery.State == ledger.Delivered:
		res.Result = "delivered"
	case rec.Delivery.Attempts > 0:
		res.Result = "failed"
	}
	return writeJSON(w, http.StatusOK, res)
}

// resolution is what the guard keeps of an operator's resolve, next to the
// records: <prefix>/resolved/<id>.json.
type resolution struct {
	PaymentID     string    `json:"payment_id"`
	TxID          string    `json:"txid"`
	Note          string    `json:"note"`
	ResolvedAt    time.Time `json:"resolved_at"`
	PreviousState string    `json:"previous_state"`
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"last_error,omitempty"`
}

// resolveDelivery settles an owed delivery the operator made by other
// means: the record is marked delivered and the note kept beside it.
func resolveDelivery(ctx context.Context, w http.ResponseWriter, h *Handler, id, note string) error {
	var res resolution
	rec, err := settle(ctx, h, id, func(rec *ledger.Record) error {
		now := time.Now().UTC()
		res = resolution{PaymentID: id, TxID: rec.TxID, Note: note, ResolvedAt: now,
			PreviousState: rec.Delivery.State, Attempts: rec.Delivery.Attempts, LastError: rec.Delivery.LastError}
		data, err := json.Marshal(res)
		if err != nil {
			return err
		}
		if err := h.store.SaveResolved(ctx, id, data); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err, Message: "saving the resolution: " + err.Error()}
		}
		rec.Delivery.State, rec.Delivery.DeliveredAt, rec.Delivery.NextAttempt = ledger.Delivered, now, time.Time{}
		return nil
	})
	if err != nil {
		return err
	}
	h.logger.Warn("owed delivery resolved by the operator", zap.String("payment_id", id), zap.String("txid", rec.TxID),
		zap.String("note", note), zap.String("previous_state", res.PreviousState), zap.Int("attempts", res.Attempts))
	return writeJSON(w, http.StatusOK, res)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

var _ caddy.AdminRouter = adminAPI{}
