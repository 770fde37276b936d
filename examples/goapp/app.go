package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// Order states. Only a valid Pi-Payment-Verified header makes an order paid,
// and nothing makes a paid order anything else.
const (
	StatusPending    = "pending"    // approved by the guard (notice)
	StatusIncomplete = "incomplete" // reported incomplete, no transaction yet (notice)
	StatusCancelled  = "cancelled"  // cancelled (notice)
	StatusPaid       = "paid"       // completed, proven by a verified header
)

// Order is what this example app keeps per payment.
type Order struct {
	PaymentID string          `json:"payment_id"`
	Status    string          `json:"status"`
	Amount    piclient.Amount `json:"amount"`
	Memo      string          `json:"memo"`
	TxID      string          `json:"txid,omitempty"`
	// Deliveries counts the verified callbacks received for the payment: the
	// guard (or a retrying client) may deliver one more than once, and the
	// order is paid once all the same.
	Deliveries int       `json:"deliveries"`
	UpdatedAt  time.Time `json:"updated_at"`
	session    string    // the browser session the order belongs to
}

// sessionCookie names the demo shop's browser session. An order belongs to
// the session that asked for its approval, and GET /orders lists that
// session's orders only: payment ids are not secrets, but a shop must not
// publish them all (with an id, a stranger can post callbacks for a payment).
const sessionCookie = "shop_session"

// sessionOf returns the request's shop session, or "".
func sessionOf(r *http.Request) string {
	if c, err := r.Cookie(sessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// ensureSession gives a browser a session cookie if it has none.
func ensureSession(w http.ResponseWriter, r *http.Request) {
	if sessionOf(r) != "" {
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: hex.EncodeToString(b), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// store is an in-memory order book keyed by payment id. A real app uses its
// database, with the payment id as a unique key.
type store struct {
	mu     sync.Mutex
	orders map[string]*Order
	seq    []string // insertion order, for listing
}

func newStore() *store { return &store{orders: map[string]*Order{}} }

// update applies f to the order of c's payment, creating it for session if
// needed, and returns a copy of the result.
func (s *store) update(c *verify.Claims, session string, f func(o *Order)) Order {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[c.Subject]
	if !ok {
		// The order belongs to the session that made it, for good: a later
		// request (a redelivery without cookies, a stranger's replay) never
		// claims it.
		o = &Order{PaymentID: c.Subject, Status: StatusPending, session: session}
		s.orders[c.Subject] = o
		s.seq = append(s.seq, c.Subject)
	}
	o.Amount, o.Memo = c.Payment.Amount, c.Payment.Memo
	f(o)
	o.UpdatedAt = time.Now().UTC()
	return *o
}

// list returns the orders of session.
func (s *store) list(session string) []Order {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Order, 0)
	for _, id := range s.seq {
		if o := s.orders[id]; session != "" && o.session == session {
			out = append(out, *o)
		}
	}
	return out
}

// markPaid records the payment as paid, once: a second delivery changes
// nothing but the delivery count.
func (s *store) markPaid(c *verify.Claims, session string) (Order, bool) {
	first := false
	o := s.update(c, session, func(o *Order) {
		o.Deliveries++
		if o.Status != StatusPaid {
			o.Status, o.TxID, first = StatusPaid, c.Payment.TxID(), true
		}
	})
	return o, first
}

// note records a notice's state unless the order is already paid.
func (s *store) note(c *verify.Claims, session, status string) Order {
	return s.update(c, session, func(o *Order) {
		if o.Status != StatusPaid {
			o.Status = status
		}
	})
}

// app is the example upstream app.
type app struct {
	v      *verify.Verifier
	orders *store
}

// newApp returns the app's routes, verifying with v.
func newApp(v *verify.Verifier) http.Handler {
	a := &app{v: v, orders: newStore()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /payments/approve", a.approve)
	mux.Handle("POST /payments/complete", verify.Middleware(v, http.HandlerFunc(a.complete)))
	mux.HandleFunc("POST /payments/incomplete", a.incomplete)
	mux.HandleFunc("POST /payments/cancelled_payment", a.cancelled)
	mux.HandleFunc("GET /orders", a.listOrders)
	mux.HandleFunc("GET /{$}", home)
	mux.HandleFunc("GET /static/{name}", static)
	return mux
}

// approve records a pending order. The notice proves that the guard approved
// the payment at Pi, nothing more: the order is not paid.
func (a *app) approve(w http.ResponseWriter, r *http.Request) {
	c, err := a.v.VerifyNotice(r)
	if err != nil {
		refuse(w, "notice_not_verified", err)
		return
	}
	o := a.orders.note(c, sessionOf(r), StatusPending)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "order": o})
}

// complete runs behind verify.Middleware: reaching it means the payment is
// paid.
func (a *app) complete(w http.ResponseWriter, r *http.Request) {
	c, _ := verify.FromContext(r.Context())
	a.paid(w, r, c)
}

func (a *app) paid(w http.ResponseWriter, r *http.Request, c *verify.Claims) {
	o, first := a.orders.markPaid(c, sessionOf(r))
	if first {
		log.Printf("payment %s paid: %s Pi, tx %s", o.PaymentID, o.Amount, o.TxID)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "order": o, "already_recorded": !first})
}

// incomplete handles a payment reported incomplete. If the guard completed it
// at Pi, the request carries a verified header and the order is paid; if it
// has no transaction yet, a notice, and the order is not paid.
func (a *app) incomplete(w http.ResponseWriter, r *http.Request) {
	if len(r.Header.Values(verify.HeaderVerified)) > 0 {
		// A verified header that fails is never downgraded to a notice.
		c, err := a.v.Verify(r)
		if err != nil {
			refuse(w, "payment_not_verified", err)
			return
		}
		a.paid(w, r, c)
		return
	}
	c, err := a.v.VerifyNotice(r)
	if err != nil {
		refuse(w, "notice_not_verified", err)
		return
	}
	o := a.orders.note(c, sessionOf(r), StatusIncomplete)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "order": o})
}

// cancelled records a cancellation notice; a paid order stays paid.
func (a *app) cancelled(w http.ResponseWriter, r *http.Request) {
	c, err := a.v.VerifyNotice(r)
	if err != nil {
		refuse(w, "notice_not_verified", err)
		return
	}
	o := a.orders.note(c, sessionOf(r), StatusCancelled)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "order": o})
}

// listOrders lists the session's orders. It starts a session if there is
// none, as a frontend served elsewhere never loads the shop's page.
func (a *app) listOrders(w http.ResponseWriter, r *http.Request) {
	ensureSession(w, r)
	orders := a.orders.list(sessionOf(r))
	slices.SortStableFunc(orders, func(x, y Order) int { return strings.Compare(x.PaymentID, y.PaymentID) })
	writeJSON(w, http.StatusOK, map[string]any{"orders": orders})
}

func refuse(w http.ResponseWriter, code string, err error) {
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": code, "message": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
