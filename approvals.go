package piguard

import (
	"sync"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// approvals remembers, in this process, payments the guard saw approved, so
// that their completion can go straight to Pi's /complete (three Pi calls per
// payment in all). It is only a shortcut: a payment approved by another
// instance, or before a restart, is read from Pi first. Keeping it out of
// storage saves a synced write on every approval. Its one cost: when another
// instance posted /complete for the payment and lost both Pi's answer and
// the re-read (its client got a pi_* error), a retry that reaches this
// instance posts /complete again; Pi refuses it as already completed, and
// the re-read that follows settles the payment as usual.
type approvals struct {
	mu      sync.Mutex
	entries map[string]approval
}

type approval struct {
	payment *piclient.Payment // nil once taken by a completion
	who     *ledger.Approver
	expires time.Time
}

const (
	approvalTTL = time.Hour // Pi payments do not stay approved-but-unpaid for long
	approvalMax = 100000
)

func newApprovals() *approvals {
	return &approvals{entries: make(map[string]approval)}
}

// put remembers an approved payment, the shortcut for its completion, and
// its approver (the first one stays).
func (a *approvals) put(p *piclient.Payment, who *ledger.Approver) { a.set(p.Identifier, p, who, true) }

// putApprover remembers who approved payment id when it is not known
// whether Pi approved it: no shortcut for its completion, only its payer.
func (a *approvals) putApprover(id string, who *ledger.Approver) { a.set(id, nil, who, true) }

// setApprover replaces the remembered approver of p (its payer proved
// itself and renewed its credential).
func (a *approvals) setApprover(p *piclient.Payment, who *ledger.Approver) {
	a.set(p.Identifier, p, who, false)
}

// set remembers payment id (p, nil for no completion shortcut) and its
// approver; with firstWins an approver already remembered stays: the first
// approver is the payer.
func (a *approvals) set(id string, p *piclient.Payment, who *ledger.Approver, firstWins bool) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.entries) >= approvalMax {
		for id, e := range a.entries {
			if now.After(e.expires) {
				delete(a.entries, id)
			}
		}
		if len(a.entries) >= approvalMax {
			clear(a.entries)
		}
	}
	if prev, ok := a.entries[id]; firstWins && ok && prev.who != nil && now.Before(prev.expires) {
		who = prev.who
	}
	a.entries[id] = approval{payment: p, who: who, expires: now.Add(approvalTTL)}
}

// approverOf returns the remembered approver of payment id, if any.
func (a *approvals) approverOf(id string) *ledger.Approver {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.entries[id]; ok && time.Now().Before(e.expires) {
		return e.who
	}
	return nil
}

// take returns and forgets the approved payment id, if remembered; its
// approver is kept.
func (a *approvals) take(id string) *piclient.Payment {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.entries[id]
	if !ok {
		return nil
	}
	if time.Now().After(e.expires) {
		delete(a.entries, id)
		return nil
	}
	p := e.payment
	e.payment = nil
	a.entries[id] = e
	return p
}
