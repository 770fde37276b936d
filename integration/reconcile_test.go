package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// watched reads GET /pi_guard/watched from Caddy's admin API.
func (e *env) watched() []map[string]any {
	e.t.Helper()
	resp, err := http.Get("http://localhost:2999/pi_guard/watched")
	require.NoError(e.t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	require.Equal(e.t, http.StatusOK, resp.StatusCode, string(data))
	var out []map[string]any
	require.NoError(e.t, json.Unmarshal(data, &out))
	return out
}

// A client that vanished right after the wallet signed never posts the
// completion: the guard's reconciler completes the payment at Pi and the
// app receives it as verified, exactly as the client would have sent it,
// without any client request. A payment that never gets a transaction is
// watched (admin listing), then given up with a notice to the app.
func TestVanishedClientPaymentIsDelivered(t *testing.T) {
	e := setup(t)
	e.extra = []string{"redeliver_to " + e.up.URL, "redeliver_backoff 50ms", "reconcile_after 200ms", "reconcile_give_up 5s"}
	e.load()

	unpaid := e.approved(pitest.NewPayment{Amount: "1"}).Identifier
	id, txid := e.submitted() // approved through Caddy; the wallet pays; the phone goes offline

	e.waitFor("the reconciled payment to reach the app", func() bool { return e.verifiedDeliveries(id) == 1 })
	var got recorded
	for _, r := range e.up.requests() {
		if r.Verified != nil && r.Verified.Subject == id {
			got = r
		}
	}
	assert.Equal(t, "/payments/complete", got.Path)
	assert.JSONEq(t, `{"paymentId":"`+id+`","txid":"`+txid+`"}`, string(got.Body))
	assert.Equal(t, "application/json", got.Header.Get("Content-Type"))
	assert.Equal(t, verify.PhaseComplete, got.Verified.Phase)
	assert.Equal(t, txid, got.Verified.Payment.TxID())
	p, _ := e.pi.Payment(id)
	assert.True(t, p.IsCompletedWith(txid))
	assert.Equal(t, 1, e.pi.CallsFor(pitest.EndpointComplete, id))
	e.waitFor("the delivery to settle", func() bool { return len(e.deliveries("")) == 0 })
	assert.Equal(t, 1.0, metric(t, "caddy_pi_guard_reconciled_total", "outcome", "completed"))

	// The unpaid payment is still watched, then given up with a notice.
	rows := e.watched()
	require.Len(t, rows, 1)
	assert.Equal(t, unpaid, rows[0]["payment_id"])
	assert.Equal(t, "no_transaction", rows[0]["last_seen"])
	e.waitFor("the watched gauge", func() bool { return metric(t, "caddy_pi_guard_watched_payments") == 1 })
	e.waitFor("the unpaid payment to be given up", func() bool { return len(e.watched()) == 0 })
	var notice *verify.Claims
	for _, r := range e.up.requests() {
		if r.Notice != nil && r.Notice.Subject == unpaid && r.Notice.Phase == verify.PhaseReconcile {
			notice = r.Notice
			assert.Equal(t, "/payments/cancelled_payment", r.Path)
		}
	}
	require.NotNil(t, notice, "the app is told the unpaid payment was given up")
	assert.Equal(t, 0, e.verifiedDeliveries(unpaid))
	assert.Zero(t, e.pi.CallsFor(pitest.EndpointComplete, unpaid))

	// A stranger's replay gets the guard's answer and never reaches the app.
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid}, stranger...)
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.False(t, fromApp(body), "%v", body)
	assert.Equal(t, 1, e.verifiedDeliveries(id))

	// The payer's app comes back later: the normal replay, no second
	// /complete, and the app's answer goes to the payer.
	status, body = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.True(t, fromApp(body), "the payer gets the app's answer: %v", body)
	assert.Equal(t, 2, e.verifiedDeliveries(id))
	assert.Equal(t, 1, e.pi.CallsFor(pitest.EndpointComplete, id))
}
