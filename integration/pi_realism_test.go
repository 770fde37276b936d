package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// Pi's front servers answered 500 with Rails' HTML page (see
// piclient/pitest/doc.go): that is "Pi unavailable", retryable, never a
// refusal, and the app hears nothing until a retry completes the payment.
func TestHTML500OnCompleteIsRetryable(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	e.pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: http.StatusInternalServerError, HTML: true, Times: 1})

	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	assert.Equal(t, http.StatusBadGateway, status, "%v", body)
	assert.Equal(t, "pi_unavailable", body["error"])
	assert.Equal(t, true, body["retryable"])
	assert.NotContains(t, body, "pi_error", "an HTML page carries no Pi code")
	assert.Equal(t, 0, e.verifiedDeliveries(id), "nothing verified reaches the app")
	got, _ := e.pi.Payment(id)
	assert.False(t, got.Status.DeveloperCompleted)

	status, body = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "the retry completes: %v", body)
	assert.Equal(t, 1, e.verifiedDeliveries(id))
	assert.Equal(t, 2, e.pi.Calls(pitest.EndpointComplete))
}

// An HTML 404 (a proxy's page) is not Pi saying "no such payment", and an
// HTML 403 is not Pi refusing the key.
func TestHTML4xxIsNotPiSpeaking(t *testing.T) {
	e := setup(t)
	for _, status := range []int{http.StatusNotFound, http.StatusForbidden, http.StatusUnauthorized} {
		p := e.pi.CreatePayment(pitest.NewPayment{})
		e.pi.InjectFault(pitest.EndpointGet, pitest.Fault{Status: status, HTML: true})
		got, body := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
		e.pi.ClearFaults()
		assert.Equal(t, http.StatusBadGateway, got, "HTML %d: %v", status, body)
		assert.Equal(t, "pi_unavailable", body["error"], "HTML %d", status)
		assert.Equal(t, true, body["retryable"])
		got, body = e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
		assert.Equal(t, http.StatusOK, got, "then Pi answers: %v", body)
	}
}

// Pi refuses the completion with verification_failed and, as in
// pi-apps/pi-ruby#4, no error_message: the client's JSON carries the reason,
// and the app hears nothing verified.
func TestVerificationFailedOnComplete(t *testing.T) {
	for name, approve := range map[string]approver{"approved here": approveThroughGuard, "approved elsewhere": approveAtPi} {
		t.Run(name, func(t *testing.T) {
			e := setup(t)
			p := e.pi.CreatePayment(pitest.NewPayment{Amount: "3.14"})
			approve(e, p.Identifier)
			txid, err := e.pi.SubmitTransactionWith(p.Identifier, pitest.Tx{VerificationError: "tx_memo_payment_identifier_mismatch"})
			require.NoError(t, err)

			status, body := e.post("/payments/complete", map[string]string{"paymentId": p.Identifier, "txid": txid})
			assert.Equal(t, http.StatusConflict, status, "%v", body)
			assert.Equal(t, "pi_rejected", body["error"])
			assert.Equal(t, "verification_failed", body["pi_error"])
			assert.Equal(t, "tx_memo_payment_identifier_mismatch", body["verification_error"])
			assert.Equal(t, false, body["retryable"])
			assert.Equal(t, 0, e.verifiedDeliveries(p.Identifier))
			for _, r := range e.up.requests() {
				assert.Nil(t, r.Verified, "%s %s", r.Method, r.Path)
			}
			got, _ := e.pi.Payment(p.Identifier)
			assert.False(t, got.Status.DeveloperCompleted)
		})
	}
}

// A client that posts its txid in upper case (valid hex) completes the
// payment; the guard records, compares and forwards the lower-case txid, as
// Pi writes it, and a replay in either case is a replay.
func TestUpperCaseTxIDCompletes(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	upper := strings.ToUpper(txid)
	require.NotEqual(t, txid, upper)

	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": upper})
	require.Equal(t, http.StatusOK, status, "%v", body)
	reqs := e.up.requests()
	last := reqs[len(reqs)-1]
	require.NotNil(t, last.Verified, "%v", last.VerifyErr)
	assert.Equal(t, txid, last.Verified.Payment.Transaction.TxID, "the token carries the lower-case txid")
	assert.True(t, last.Verified.Payment.IsCompletedWith(txid))
	assert.Equal(t, piclient.Amount("3.14"), last.Verified.Payment.Amount)

	for _, again := range []string{txid, upper} {
		status, body = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": again})
		require.Equal(t, http.StatusOK, status, "replay with %s: %v", again, body)
	}
	assert.Equal(t, 3, e.verifiedDeliveries(id))
	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointComplete), "replays make no second /complete")
	assert.Zero(t, e.pi.RedundantCompletes(id))
}

// The fake writes amounts as Pi does, as floats ("1.0"): the guard keeps the
// exact text and compares it as a number.
func TestFloatAmountsThroughTheGuard(t *testing.T) {
	e := setup(t, "min_amount 1", "max_amount 1")
	p := e.pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	approveThroughGuard(e, p.Identifier)
	txid, err := e.pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	status, body := e.post("/payments/complete", map[string]string{"paymentId": p.Identifier, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", body)
	reqs := e.up.requests()
	last := reqs[len(reqs)-1]
	require.NotNil(t, last.Verified)
	assert.Equal(t, piclient.Amount("1.0"), last.Verified.Payment.Amount, "as Pi wrote it")
}
