package piguard

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// unblockWorld is a reconcileWorld whose guard the admin API sees, with an
// admin endpoint for the command.
func unblockWorld(t *testing.T, mod func(h *Handler)) (*reconcileWorld, string) {
	w := newReconcileWorld(t, func(h *Handler) {
		h.ReconcileAfter = caddyDuration(time.Hour) // the reconciler stays out of the way
		h.ReconcileGiveUp = caddyDuration(2 * time.Hour)
		if mod != nil {
			mod(h)
		}
	})
	live.Store(w.h, struct{}{})
	t.Cleanup(func() { live.Delete(w.h) })
	return w, adminServer(t)
}

// A user stuck on a payment the wallet paid but whose /complete never
// reached Pi: one command completes it at Pi, once, and the app gets it
// as verified.
func TestUnblockCompletesAPaidPayment(t *testing.T) {
	w, addr := unblockWorld(t, nil)
	id := w.approve()
	txid, err := w.pi.SubmitTransaction(id)
	require.NoError(t, err)

	var out bytes.Buffer
	require.NoError(t, cmdUnblock(&out, addr, id))
	assert.Contains(t, out.String(), "payment "+id+" completed at Pi with transaction "+txid+"; its user can pay again; the app accepted it")
	p, _ := w.pi.Payment(id)
	assert.True(t, p.Status.DeveloperCompleted, "Pi no longer holds it as the user's pending payment")
	assert.Equal(t, 1, w.pi.CallsFor(pitest.EndpointComplete, id))
	require.Len(t, w.app.verifiedFor(id), 1, "the app got it as verified")
	assert.Equal(t, txid, w.app.verifiedFor(id)[0].Payment.TxID())
	w.h.flushWatch(context.Background()) // the background writer's work
	assert.Nil(t, w.entry(id), "no longer watched")

	// Again: nothing more happens at Pi or at the app.
	out.Reset()
	require.NoError(t, cmdUnblock(&out, addr, id))
	assert.Contains(t, out.String(), "already completed at Pi")
	assert.Equal(t, 1, w.pi.CallsFor(pitest.EndpointComplete, id))
	assert.Len(t, w.app.verifiedFor(id), 1)
}

// Approved but never paid: cancelled at Pi, and the app gets a cancel
// notice; never while the user may still be in the wallet.
func TestUnblockCancelsAPaymentWithoutTransaction(t *testing.T) {
	w, addr := unblockWorld(t, nil)
	id := w.approve()

	var out bytes.Buffer
	err := cmdUnblock(&out, addr, id)
	require.Error(t, err, "created a moment ago: its user may be paying")
	assert.Contains(t, err.Error(), "may be paying right now")
	p, _ := w.pi.Payment(id)
	assert.False(t, p.IsCancelled())

	defer func(was time.Duration) { unblockMinAge = was }(unblockMinAge)
	unblockMinAge = 0
	require.NoError(t, cmdUnblock(&out, addr, id))
	assert.Contains(t, out.String(), "payment "+id+" had no transaction: cancelled at Pi; its user can pay again; the app accepted the cancel notice")
	p, _ = w.pi.Payment(id)
	assert.True(t, p.IsCancelled())
	require.Len(t, w.app.notices(id), 1)
	assert.Equal(t, verify.PhaseCancel, w.app.notices(id)[0].Phase)
	assert.Empty(t, w.app.verifiedFor(id))
}

// By user: every payment of that user the guard watches, no other user's.
func TestUnblockByUser(t *testing.T) {
	w, addr := unblockWorld(t, nil)
	mine := w.approve()
	_, err := w.pi.SubmitTransaction(mine)
	require.NoError(t, err)
	other := w.pi.CreatePayment(pitest.NewPayment{Amount: "1", UserUID: "another-user"})
	status, code := call(w.h, proxyTo(w.app.srv.URL), DefaultApprovePath, map[string]string{"paymentId": other.Identifier})
	require.Equal(t, http.StatusOK, status, code)
	w.h.flushWatch(context.Background())

	var out bytes.Buffer
	require.NoError(t, cmdUnblockUser(&out, addr, pitest.DefaultUserUID))
	assert.Contains(t, out.String(), "payment "+mine+" completed at Pi")
	assert.NotContains(t, out.String(), other.Identifier)
	p, _ := w.pi.Payment(other.Identifier)
	assert.False(t, p.Status.DeveloperCompleted || p.IsCancelled(), "another user's payment is left alone")

	assert.ErrorContains(t, cmdUnblockUser(&out, addr, "nobody"), "watches no payment of user nobody")
}

// Without redeliver_to the payment is completed (the user is unblocked),
// kept owed, and the command says how to finish: exit status 1.
func TestUnblockWithoutRedeliverTo(t *testing.T) {
	w, addr := unblockWorld(t, func(h *Handler) { h.RedeliverTo = "" })
	id := w.approve()
	_, err := w.pi.SubmitTransaction(id)
	require.NoError(t, err)

	var out bytes.Buffer
	err = cmdUnblock(&out, addr, id)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the app has not accepted it yet")
	assert.Contains(t, out.String(), "not delivered (no redeliver_to): deliver it by hand, then `caddy pi-guard resolve "+id)
	p, _ := w.pi.Payment(id)
	assert.True(t, p.Status.DeveloperCompleted)

	out.Reset()
	require.NoError(t, cmdDeliveries(&out, addr, ledger.Pending, false))
	assert.Contains(t, out.String(), id, "listed as owed")
}

// A transaction Pi has not verified is neither completed nor cancelled.
func TestUnblockLeavesAnUnverifiedTransaction(t *testing.T) {
	w, addr := unblockWorld(t, nil)
	id := w.approve()
	_, err := w.pi.SubmitTransactionWith(id, pitest.Tx{Unverified: true})
	require.NoError(t, err)

	err = cmdUnblock(new(bytes.Buffer), addr, id)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "has not verified it")
	assert.Equal(t, 0, w.pi.CallsFor(pitest.EndpointComplete, id))
	assert.Equal(t, 0, w.pi.CallsFor(pitest.EndpointCancel, id))
}

// A payment the guard completed whose delivery is exhausted: unblock
// changes nothing at Pi and says how to finish.
func TestUnblockExhaustedDeliverySaysRetry(t *testing.T) {
	w, addr := unblockWorld(t, nil)
	id := w.approve()
	txid, err := w.pi.SubmitTransaction(id)
	require.NoError(t, err)
	_, err = w.h.pi.Complete(context.Background(), id, txid)
	require.NoError(t, err)
	p, _ := w.pi.Payment(id)
	rec := &ledger.Record{PaymentID: id}
	rec.MarkCompleted(&p, txid)
	rec.Delivery = ledger.Delivery{State: ledger.Exhausted, Attempts: 10, LastError: "the app answered HTTP 500"}
	require.NoError(t, w.h.store.Save(context.Background(), rec))

	var out bytes.Buffer
	err = cmdUnblock(&out, addr, id)
	require.Error(t, err, "the app has not accepted it")
	assert.Contains(t, out.String(), "already completed at Pi")
	assert.Contains(t, out.String(), "redelivery is exhausted: fix the app, then `caddy pi-guard retry "+id+"`")
	assert.Empty(t, w.app.verifiedFor(id))
}
