package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// incompleteBody is what the frontend posts from onIncompletePaymentFound:
// the PaymentDTO as the SDK gave it, which an attacker can forge.
func incompleteBody(id, txid, link, amount string) string {
	return fmt.Sprintf(`{"payment":{"identifier":%q,"amount":%s,"status":{"developer_approved":true,"transaction_verified":true,"developer_completed":false},"transaction":{"txid":%q,"verified":true,"_link":%q}}}`,
		id, amount, txid, link)
}

func TestIncompletePaymentWithTransactionIsCompletedAndVerified(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted(approveAtPi)
	p, _ := e.pi.Payment(id)
	status, body := e.post("/payments/incomplete", incompleteBody(id, txid, p.Transaction.Link, "3.14"))
	require.Equal(t, http.StatusOK, status, "%v", body)
	reqs := e.up.requests()
	last := reqs[len(reqs)-1]
	require.NotNil(t, last.Verified)
	assert.Equal(t, "incomplete", last.Verified.Phase)
	assert.Equal(t, txid, last.Verified.Payment.TxID())
	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointComplete))

	// Found again: answered from the record, no Pi call. The payment was
	// approved elsewhere, so the guard knows no payer: the app, which has
	// it, is not asked again.
	e.pi.ResetCalls()
	status, _ = e.post("/payments/incomplete", incompleteBody(id, txid, "", "3.14"))
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, 1, e.verifiedDeliveries(id))
	assert.Zero(t, e.pi.Calls(pitest.EndpointComplete)+e.pi.Calls(pitest.EndpointGet))
}

// Attack: a forged incomplete-payment body claims a transaction and points
// its _link at an internal URL. The guard uses only the identifier, re-reads
// the payment from Pi, never fetches the posted link, and never forwards the
// payment as verified.
func TestForgedIncompletePaymentIsNotTrusted(t *testing.T) {
	e := setup(t)
	var internalHits atomic.Int64
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { internalHits.Add(1) }))
	defer internal.Close()

	p := e.approved(pitest.NewPayment{Amount: "10"})
	forgedTx := strings.Repeat("ab", 32)
	before := len(e.up.requests())
	status, body := e.post("/payments/incomplete", incompleteBody(p.Identifier, forgedTx, internal.URL+"/admin", "10"))
	require.Equal(t, http.StatusConflict, status, "%v", body)
	assert.Equal(t, "txid_mismatch", body["error"], "the posted payment claims a transaction Pi does not show (and a stranger may not cancel a fresh payment)")

	assert.Zero(t, internalHits.Load(), "the posted _link is never fetched")
	assert.Zero(t, e.verifiedDeliveries(p.Identifier))
	assert.Zero(t, e.pi.Calls(pitest.EndpointComplete))
	got, _ := e.pi.Payment(p.Identifier)
	assert.False(t, got.Status.Cancelled)
	assert.Len(t, e.up.requests(), before, "the app hears nothing")
}

func TestCancelledPaymentIsForwardedAsNotice(t *testing.T) {
	e := setup(t)
	p := e.approved(pitest.NewPayment{})
	// Not cancelled at Pi: a client cannot make the app release an order.
	status, body := e.post("/payments/cancelled_payment", map[string]string{"paymentId": p.Identifier})
	assert.Equal(t, http.StatusConflict, status)
	assert.Equal(t, "not_cancelled", body["error"])
	before := len(e.up.requests())

	require.NoError(t, e.pi.UserCancel(p.Identifier))
	status, body = e.post("/payments/cancelled_payment", map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status, "%v", body)
	reqs := e.up.requests()
	require.Len(t, reqs, before+1)
	last := reqs[len(reqs)-1]
	require.NotNil(t, last.Notice)
	assert.Equal(t, "cancel", last.Notice.Phase)
	assert.True(t, last.Notice.Payment.Status.UserCancelled)
	assert.Nil(t, last.Verified)
}

func TestBlockchainCrossCheck(t *testing.T) {
	e := setup(t)
	e.extra = []string{"horizon_url " + e.pi.HorizonURL, "wallet " + e.pi.Wallet}
	e.load()

	id, txid := e.submitted()
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, 1, e.verifiedDeliveries(id))

	// Attacks: on-chain transactions that do not settle the payment.
	for name, tx := range map[string]pitest.Tx{
		"0.01 paid for a 3.14 payment": {Amount: "0.01"},
		"memo of another payment":      {Memo: "SomeOtherPayment"},
		"paid to another wallet":       {To: "GBOTHERWALLETXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"},
		"failed transaction":           {Failed: true},
	} {
		t.Run(name, func(t *testing.T) {
			p := e.approved(pitest.NewPayment{Amount: "3.14"})
			txid, err := e.pi.SubmitTransactionWith(p.Identifier, tx)
			require.NoError(t, err)
			e.pi.ResetCalls()
			status, body := e.post("/payments/complete", map[string]string{"paymentId": p.Identifier, "txid": txid})
			assert.Equal(t, http.StatusConflict, status, "%v", body)
			assert.Equal(t, "blockchain_mismatch", body["error"])
			assert.Zero(t, e.verifiedDeliveries(p.Identifier))
			assert.Zero(t, e.pi.Calls(pitest.EndpointComplete), "Pi is not asked to complete it")
			assert.Equal(t, 2, e.pi.Calls(pitest.EndpointHorizon), "one transaction read and one operations read")
		})
	}
}

// The app's price policy: it sees the payment first and can say no; Pi is
// then not asked to approve, and with cancel_rejected (which needs bind_user)
// the owner's payment is cancelled at Pi.
func TestAppCanRejectApproval(t *testing.T) {
	e := setup(t)
	e.extra = []string{"bind_user", "cancel_rejected"}
	e.load()
	e.pi.AddUser("alice", "alice-token", "alice")
	e.up.approveStatus = http.StatusPaymentRequired
	p := e.pi.CreatePayment(pitest.NewPayment{UserUID: "alice", Amount: "0.01", Metadata: []byte(`{"product":"pie","price":"10"}`)})
	status, body := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier}, "Authorization", "Bearer alice-token")
	assert.Equal(t, http.StatusPaymentRequired, status, "the app's answer reaches the client: %v", body)
	assert.Equal(t, true, body["upstream"])
	assert.Zero(t, e.pi.Calls(pitest.EndpointApprove))
	got, _ := e.pi.Payment(p.Identifier)
	assert.False(t, got.Status.DeveloperApproved)
	assert.True(t, got.Status.Cancelled)
	reqs := e.up.requests()
	require.NotNil(t, reqs[len(reqs)-1].Notice)
	assert.JSONEq(t, `{"product":"pie","price":"10"}`, string(reqs[len(reqs)-1].Notice.Payment.Metadata), "the app sees the metadata to price")
}

// Attack: a payment for 0.01 when the app expects at least 10.
func TestAmountLimits(t *testing.T) {
	e := setup(t)
	e.extra = []string{"min_amount 10", "max_amount 1000"}
	e.load()
	for _, amount := range []string{"0.01", "9.9999999", "1000.0000001"} {
		p := e.pi.CreatePayment(pitest.NewPayment{Amount: amount})
		status, body := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
		assert.Equal(t, http.StatusConflict, status, "%s: %v", amount, body)
		assert.Equal(t, "amount_not_allowed", body["error"])
	}
	assert.Zero(t, e.pi.Calls(pitest.EndpointApprove))
	assert.Empty(t, e.up.requests())
	p := e.pi.CreatePayment(pitest.NewPayment{Amount: "10"})
	status, body := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
	assert.Equal(t, http.StatusOK, status, "%v", body)
}

// Attack: completing another user's payment (its id and txid leaked) with
// one's own session. With bind_user the access token decides whose payments
// a request may touch.
func TestUserBinding(t *testing.T) {
	e := setup(t)
	e.extra = []string{"bind_user"}
	e.load()
	e.pi.AddUser("alice", "alice-token", "alice")
	e.pi.AddUser("mallory", "mallory-token", "mallory")

	p := e.pi.CreatePayment(pitest.NewPayment{UserUID: "alice"})
	status, body := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "user_token_missing", body["error"])
	status, body = e.post("/payments/approve", map[string]string{"paymentId": p.Identifier}, "Authorization", "Bearer forged")
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "user_token_invalid", body["error"])
	status, body = e.post("/payments/approve", map[string]string{"paymentId": p.Identifier}, "Authorization", "Bearer mallory-token")
	assert.Equal(t, http.StatusForbidden, status)
	assert.Equal(t, "wrong_user", body["error"])
	assert.Zero(t, e.pi.Calls(pitest.EndpointApprove))

	status, body = e.post("/payments/approve", map[string]string{"paymentId": p.Identifier}, "Authorization", "Bearer alice-token")
	require.Equal(t, http.StatusOK, status, "%v", body)
	txid, err := e.pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	status, body = e.post("/payments/complete", map[string]string{"paymentId": p.Identifier, "txid": txid}, "Authorization", "Bearer mallory-token")
	assert.Equal(t, http.StatusForbidden, status, "%v", body)
	assert.Zero(t, e.verifiedDeliveries(p.Identifier))

	status, body = e.post("/payments/complete", map[string]string{"paymentId": p.Identifier, "txid": txid}, "Authorization", "Bearer alice-token")
	require.Equal(t, http.StatusOK, status, "%v", body)
	reqs := e.up.requests()
	last := reqs[len(reqs)-1]
	require.NotNil(t, last.Verified)
	assert.Equal(t, "alice", last.Verified.UserUID, "the token's uid is in the claims")

	// Replays from the record are bound too: mallory cannot replay alice's
	// completed payment, by complete or incomplete.
	status, body = e.post("/payments/complete", map[string]string{"paymentId": p.Identifier, "txid": txid}, "Authorization", "Bearer mallory-token")
	assert.Equal(t, http.StatusForbidden, status, "%v", body)
	status, body = e.post("/payments/incomplete", incompleteBody(p.Identifier, txid, "", "1"), "Authorization", "Bearer mallory-token")
	assert.Equal(t, http.StatusForbidden, status, "%v", body)
	assert.Equal(t, 1, e.verifiedDeliveries(p.Identifier))
	assert.Zero(t, e.pi.RedundantCompletes(p.Identifier), "mallory's attempts never reached Pi's /complete")
	assert.Equal(t, 3, e.pi.Calls(pitest.EndpointMe), "alice's token is checked once and cached (forged, mallory, alice)")
}
