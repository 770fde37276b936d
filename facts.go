package piguard

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// facts remembers what Pi's answers settled, so that a request Pi already
// answered is refused without asking Pi again (and without queueing for the
// payment's lock): a payment's transaction never changes once Pi shows one,
// so a completion naming another txid is refused at once; and an id Pi does
// not know stays unknown for a few seconds, so repeating it costs nothing.
// Facts only ever refuse: a payment is never accepted because of them.
type facts struct {
	mu      sync.Mutex
	txids   map[string]string    // payment id → its transaction's txid
	unknown map[string]time.Time // payment id → when Pi's "not found" is stale
}

const (
	factsMax   = 100000
	unknownTTL = 5 * time.Second
)

func newFacts() *facts {
	return &facts{txids: make(map[string]string), unknown: make(map[string]time.Time)}
}

// learn records what one Pi answer about payment id settles.
func (f *facts) learn(id string, p *piclient.Payment, err error) {
	if f == nil || id == "" {
		return
	}
	tx := p.TxID()
	notFound := err != nil && piclient.IsNotFound(err)
	if (tx == "" || p.Identifier != id) && !notFound {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if tx != "" && p.Identifier == id {
		if len(f.txids) >= factsMax {
			clear(f.txids)
		}
		f.txids[id] = strings.ToLower(tx)
	}
	if notFound {
		if len(f.unknown) >= factsMax {
			clear(f.unknown)
		}
		f.unknown[id] = time.Now().Add(unknownTTL)
	}
}

// refuse returns the answer to st when Pi already settled it: the payment is
// unknown to Pi, or (on the complete route) its transaction is another one.
func (f *facts) refuse(st *step) *guardError {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	until, unknown := f.unknown[st.id]
	if unknown && time.Now().After(until) {
		delete(f.unknown, st.id)
		unknown = false
	}
	tx := f.txids[st.id]
	f.mu.Unlock()
	switch {
	case unknown:
		st.outcome = "known_not_found"
		return refuse(http.StatusNotFound, "payment_not_found", "Pi knows no payment with this id for this app")
	case st.phase == phaseComplete && tx != "" && !strings.EqualFold(tx, st.txid):
		st.outcome = "known_txid_mismatch"
		return refuse(http.StatusConflict, "txid_mismatch", "the txid is not this payment's transaction")
	}
	return nil
}
