package piguard

import (
	"context"
	"net/http"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// read reads the payment from Pi.
func (h *Handler) read(ctx context.Context, st *step) (*piclient.Payment, *guardError) {
	p, err := st.pi(func() (*piclient.Payment, error) { return h.pi.GetPayment(ctx, st.id) })
	if err != nil {
		return nil, piFailure(err, st.id)
	}
	return p, nil
}

// approveAtPi makes sure Pi has the payment approved. p is the payment as
// just read.
func (h *Handler) approveAtPi(ctx context.Context, st *step, p *piclient.Payment) (*piclient.Payment, *guardError) {
	if p.Status.DeveloperApproved {
		st.outcome = "already_approved"
		return p, nil
	}
	approved, err := st.pi(func() (*piclient.Payment, error) { return h.pi.Approve(ctx, st.id) })
	if err == nil && approved.Status.DeveloperApproved {
		st.outcome = "approved"
		return approved, nil
	}
	// Pi refused, or its answer was lost or unclear: only a fresh read tells.
	fresh, rerr := st.pi(func() (*piclient.Payment, error) { return h.pi.GetPayment(ctx, st.id) })
	if rerr == nil {
		if ge := h.acceptable(fresh, st); ge != nil {
			return nil, ge
		}
		if fresh.Status.DeveloperApproved {
			st.outcome = "approved_after_reread"
			return fresh, nil
		}
	}
	return nil, unresolved(err, rerr, st.id, "approved")
}

// complete makes sure Pi has the payment completed with st.txid, which must
// be the payment's own transaction as Pi reports it.
//
// known is the payment as last seen: from this guard's record of its
// approval (network, direction, app, amount and user were checked then and
// cannot change), or from a read just made. With it, the first read is
// skipped: Pi's answer to /complete, or a fresh read, is what decides.
func (h *Handler) complete(ctx context.Context, st *step, known *piclient.Payment) (*piclient.Payment, *guardError) {
	if known == nil {
		p, ge := h.read(ctx, st)
		if ge != nil {
			return nil, ge
		}
		if paid(p, st.txid) && h.acceptable(p, st) == nil {
			st.outcome = "already_completed"
			return p, h.crossCheck(ctx, p, st.txid)
		}
		if ge := h.completable(p, st); ge != nil {
			return nil, ge
		}
		known = p
	} else if ge := h.acceptable(known, st); ge != nil {
		return nil, ge // checked again for this request: its user may differ
	}
	if ge := h.crossCheck(ctx, known, st.txid); ge != nil {
		return nil, ge
	}
	done, err := st.pi(func() (*piclient.Payment, error) { return h.pi.Complete(ctx, st.id, st.txid) })
	if err == nil && paid(done, st.txid) && h.acceptable(done, st) == nil {
		st.outcome = "completed"
		return done, nil
	}
	// Pi refused (perhaps "already completed" by a concurrent instance), or the
	// answer was lost or unclear: only a fresh read tells.
	fresh, rerr := st.pi(func() (*piclient.Payment, error) { return h.pi.GetPayment(ctx, st.id) })
	if rerr == nil {
		if paid(fresh, st.txid) && h.acceptable(fresh, st) == nil {
			st.outcome = "completed_after_reread"
			return fresh, nil
		}
		if ge := h.completable(fresh, st); ge != nil {
			return nil, ge
		}
		if fresh.IsCompletedWith(st.txid) {
			// Completed, but Pi does not show the transaction verified: not
			// forwarded as verified (see paid).
			ge := refuse(http.StatusConflict, "transaction_not_verified", "Pi shows the payment completed but not its transaction verified; retry later")
			ge.Retryable = true
			return nil, ge
		}
	}
	return nil, unresolved(err, rerr, st.id, "completed with this txid")
}

// paid reports whether Pi shows p completed with txid, with belt and
// braces: developer_completed with that very transaction, and Pi's own
// verification of it (status.transaction_verified and transaction.verified).
// Only then is a request forwarded as verified.
func paid(p *piclient.Payment, txid string) bool {
	return p.IsCompletedWith(txid) && p.Status.TransactionVerified && p.Transaction.Verified
}

// completable refuses payments that must not be completed with st.txid.
func (h *Handler) completable(p *piclient.Payment, st *step) *guardError {
	if ge := h.acceptable(p, st); ge != nil {
		return ge
	}
	switch {
	case p.TxID() == "":
		return refuse(http.StatusConflict, "no_transaction", "Pi shows no blockchain transaction for this payment yet; complete it after the wallet submitted it")
	case p.TxID() != st.txid:
		return refuse(http.StatusConflict, "txid_mismatch", "the txid is not this payment's transaction")
	case !p.Status.DeveloperApproved && !p.Status.DeveloperCompleted:
		return refuse(http.StatusConflict, "not_approved", "the payment was never approved; approve it first")
	}
	return nil
}

// acceptable refuses payments this app must not approve or complete: not
// ours (see ours), cancelled, or outside the configured amount limits.
func (h *Handler) acceptable(p *piclient.Payment, st *step) *guardError {
	if ge := h.ours(p, st); ge != nil {
		return ge
	}
	switch {
	case p.IsCancelled():
		return refuse(http.StatusConflict, "payment_cancelled", "the payment was cancelled")
	case h.MinAmount != "" && p.Amount.Cmp(h.MinAmount) < 0:
		// The payment's own amount is not named: the caller may not be
		// its payer.
		return refuse(http.StatusConflict, "amount_not_allowed", "the payment's amount is below what this app accepts (at least %s Pi)", h.MinAmount)
	case h.MaxAmount != "" && p.Amount.Cmp(h.MaxAmount) > 0:
		return refuse(http.StatusConflict, "amount_not_allowed", "the payment's amount is above what this app accepts (at most %s Pi)", h.MaxAmount)
	}
	return nil
}

// ours refuses payments that are not this app's to act on: on the other
// network, not user-to-app, or (with user binding) another user's.
func (h *Handler) ours(p *piclient.Payment, st *step) *guardError {
	switch {
	case p.Network != h.Network:
		return refuse(http.StatusConflict, "wrong_network", "the payment is on %q but this app accepts %q only", p.Network, h.Network)
	case p.Direction != piclient.DirectionUserToApp:
		return refuse(http.StatusConflict, "wrong_direction", "the payment is not a user-to-app payment")
	case st.uid != "" && p.UserUID != st.uid:
		return refuse(http.StatusForbidden, "wrong_user", "the payment belongs to another user")
	}
	return nil
}

// unresolved explains why a payment is not in the state a phase needed after
// the state-changing call (err) and the re-read (rerr).
func unresolved(err, rerr error, id, want string) *guardError {
	switch {
	case err != nil:
		return piFailure(err, id)
	case rerr != nil:
		return piFailure(rerr, id)
	}
	ge := refuse(http.StatusBadGateway, "pi_inconsistent", "Pi accepted the call but does not show the payment %s; retry the request", want)
	ge.Retryable = true
	return ge
}
