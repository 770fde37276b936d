package ledger

import (
	"net/http"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// Delivery states of a record.
const (
	// Pending: Pi completed the payment and the app has not yet answered a
	// verified request for it with a 2xx.
	Pending = "pending"
	// Delivered: the app answered a verified request with a 2xx.
	Delivered = "delivered"
	// Exhausted: every redelivery attempt failed; an operator must act.
	Exhausted = "exhausted"
)

// PhaseComplete is a record's Phase once Pi completed the payment (the same
// word as verify.PhaseComplete).
const PhaseComplete = "complete"

// Record is what the guard durably remembers of one payment: what Pi said,
// the request it forwards as verified, and whether the app has received it.
// Pi stays the source of truth; the record is what the guard did and owes.
// Its JSON is the on-disk format.
type Record struct {
	PaymentID string            `json:"payment_id"`
	Phase     string            `json:"phase"` // PhaseComplete: Pi completed the payment
	TxID      string            `json:"txid,omitempty"`
	Payment   *piclient.Payment `json:"payment"`
	Request   *Request          `json:"request,omitempty"`
	Delivery  Delivery          `json:"delivery"`
	// Payer holds the digests of the approver's credentials: the app's
	// answer to a completion, first delivery or replay, goes only to a
	// request that carries them.
	Payer []string `json:"payer,omitempty"`
	// PayerBefore is the approver's credential before the app's answer to
	// the approve set new cookies (see Approver.Before); either counts.
	PayerBefore []string `json:"payer_before,omitempty"`
	// Caller, in records written before Payer, is a hash of the completing
	// request's Cookie and Authorization headers. Never written now.
	Caller string `json:"caller,omitempty"`
	// CompletedAt is when the guard saw Pi complete the payment (zero in
	// records written before it was kept: Created is then the closest).
	CompletedAt time.Time `json:"completed_at,omitzero"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	// Version counts the record's writes: Save writes the one it loaded
	// plus one. Every write of a payment's record is made under its lock
	// after a Load, so of two records of one payment the higher version is
	// the current one (docs/segment-store.md; 0 in records written before).
	Version uint64 `json:"version,omitempty"`

	// Unsaved: the last save failed; the record lives in memory only until
	// a later save succeeds (Ledger.Save says so, and the redelivery pass
	// writes it again through Ledger.Unsaved).
	Unsaved bool `json:"-"`
}

// Request is the verified request as it was forwarded, so it can be sent
// again, byte for byte, with a fresh header. Verified requests are
// forwarded without a query string (the token binds method, path and body
// only), so none is stored.
type Request struct {
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Host   string      `json:"host,omitempty"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// Delivery tracks the app's receipt of a completed payment.
type Delivery struct {
	State       string    `json:"state,omitempty"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
}

// Completed reports whether the guard saw Pi complete the payment with its
// txid.
func (r *Record) Completed() bool {
	return r != nil && r.Phase == PhaseComplete && r.Payment.IsCompletedWith(r.TxID)
}

// MarkCompleted records that Pi completed the payment with p's transaction,
// now unless an earlier completion was recorded.
func (r *Record) MarkCompleted(p *piclient.Payment, txid string) {
	r.Phase, r.TxID, r.Payment = PhaseComplete, txid, p
	if r.CompletedAt.IsZero() {
		r.CompletedAt = time.Now().UTC()
	}
}

// CompletionTime is when the guard saw Pi complete the payment.
func (r *Record) CompletionTime() time.Time {
	if r.CompletedAt.IsZero() {
		return r.Created
	}
	return r.CompletedAt
}

// Owed reports whether the record's delivery is pending or exhausted.
func (r *Record) Owed() bool {
	return r.Delivery.State == Pending || r.Delivery.State == Exhausted
}
