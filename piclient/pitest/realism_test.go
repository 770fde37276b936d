package pitest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// The fake's answers have the shapes of the real API's (see doc.go for the
// sources): these tests read the raw bytes, not what the client makes of them.

func TestPaymentDTOShape(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	for amount, want := range map[string]string{"1": "1.0", "0.42": "0.42", "0.00001": "1e-05", "3.14": "3.14", "2.50": "2.5",
		"3.14159265358979323846": "3.14159265358979323846"} { // never rounded
		p := s.CreatePayment(pitest.NewPayment{Amount: amount})
		r := do(t, "GET", s.URL+"/payments/"+p.Identifier, keyAuth(s), "")
		require.Equal(t, http.StatusOK, r.status)
		var raw map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(r.body, &raw))
		assert.Equal(t, want, string(raw["amount"]), "amount %s is a JSON float", amount)
		assert.Equal(t, "null", string(raw["transaction"]), "transaction: null before the user pays")
		assert.Equal(t, "null", string(raw["split_recipients"]), "a field the client does not know")
		assert.Regexp(t, `^"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"$`, string(raw["created_at"]))
		assert.Regexp(t, `^"[A-Za-z0-9]{28}"$`, string(raw["identifier"]))
		assert.Regexp(t, `^"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"$`, string(raw["user_uid"]))

		// The client decodes it, and the amount is the same number.
		got, err := newClient(t, s).GetPayment(t.Context(), p.Identifier)
		require.NoError(t, err)
		assert.Equal(t, piclient.Amount(want), got.Amount)
		assert.Zero(t, got.Amount.Cmp(piclient.Amount(amount)))
	}
}

func TestVerificationFailedBody(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	p := approvedPayment(t, s, c)
	txid, err := s.SubmitTransactionWith(p.Identifier, pitest.Tx{VerificationError: "tx_memo_payment_identifier_mismatch"})
	require.NoError(t, err)
	r := do(t, "POST", s.URL+"/payments/"+p.Identifier+"/complete", keyAuth(s), `{"txid":"`+txid+`"}`)
	assert.Equal(t, http.StatusBadRequest, r.status)
	// As seen in pi-apps/pi-ruby#4: no error_message.
	assert.JSONEq(t, `{"error": "verification_failed", "verification_error": "tx_memo_payment_identifier_mismatch"}`, string(r.body))

	_, err = c.Complete(t.Context(), p.Identifier, txid)
	assert.Equal(t, "tx_memo_payment_identifier_mismatch", piclient.VerificationError(err))
	got := mustPayment(t, s, p.Identifier)
	assert.False(t, got.Status.DeveloperCompleted)
	assert.False(t, got.Status.TransactionVerified)
	assert.False(t, got.Transaction.Verified)
}

func TestCancelRefusalBodies(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	cancelURL := func(id string) string { return s.URL + "/payments/" + id + "/cancel" }

	// A payment with a transaction: Pi's message, word for word.
	paid, _ := paidPayment(t, s, c)
	r := do(t, "POST", cancelURL(paid), keyAuth(s), "")
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.JSONEq(t, `{"error": "payment_tx_present", "error_message": "You cannot cancel this payment, because an associated blockchain transaction has been recorded."}`, string(r.body))
	got := mustPayment(t, s, paid)
	assert.False(t, got.IsCancelled())

	// Completed, and cancelled twice: the payment comes beside the code.
	_, err := c.Complete(t.Context(), paid, got.TxID())
	require.NoError(t, err)
	twice := s.CreatePayment(pitest.NewPayment{}).Identifier
	_, err = c.Cancel(t.Context(), twice)
	require.NoError(t, err)
	for id, code := range map[string]string{paid: "already_completed", twice: "cancelled_payment"} {
		r := do(t, "POST", cancelURL(id), keyAuth(s), "")
		assert.Equal(t, http.StatusBadRequest, r.status)
		var body struct {
			Error        string          `json:"error"`
			ErrorMessage string          `json:"error_message"`
			Payment      json.RawMessage `json:"payment"`
		}
		require.NoError(t, json.Unmarshal(r.body, &body))
		assert.Equal(t, code, body.Error)
		assert.NotEmpty(t, body.ErrorMessage)
		assert.Contains(t, string(body.Payment), `"split_recipients":null`, "the payment as the API writes it")

		_, err := c.Cancel(t.Context(), id)
		var e *piclient.Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, code, e.Code)
		require.NotNil(t, e.Payment)
		assert.Equal(t, id, e.Payment.Identifier)
	}
}

var reRailsTitle = regexp.MustCompile(`<title>We're sorry, but something went wrong \(500\)</title>`)

func TestFaultHTML(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s, func(o *piclient.Options) { o.MaxRetries = -1 })
	id, txid := paidPayment(t, s, c)
	for _, status := range []int{500, 502, 404, 403, 401, 400, 429} {
		s.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: status, HTML: true, Times: 1})
		r := do(t, "POST", s.URL+"/payments/"+id+"/complete", keyAuth(s), `{"txid":"`+txid+`"}`)
		assert.Equal(t, status, r.status)
		assert.Contains(t, r.header.Get("Content-Type"), "text/html")
		assert.False(t, json.Valid(r.body))
		if status == 500 {
			assert.Regexp(t, reRailsTitle, string(r.body))
		} else {
			assert.Contains(t, string(r.body), fmt.Sprintf("<title>%d %s</title>", status, http.StatusText(status)))
		}

		s.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: status, HTML: true, Times: 1})
		_, err := c.Complete(t.Context(), id, txid)
		assert.True(t, piclient.IsUnavailable(err), "HTML %d is not Pi's word", status)
		assert.False(t, piclient.IsNotFound(err))
	}
	assert.False(t, mustPayment(t, s, id).Status.DeveloperCompleted, "an HTML fault does not perform the call")
	_, err := c.Complete(t.Context(), id, strings.ToUpper(txid))
	require.NoError(t, err, "the client sends the txid in lower case")

	assert.Panics(t, func() { s.InjectFault(pitest.EndpointGet, pitest.Fault{HTML: true}) }, "HTML needs a status")

	// Through the control API too.
	r := do(t, "POST", s.ControlURL+"/faults", "", `{"endpoint":"get","status":500,"html":true,"times":1}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r = do(t, "GET", s.URL+"/payments/"+id, keyAuth(s), "")
	assert.Equal(t, 500, r.status)
	assert.Regexp(t, reRailsTitle, string(r.body))
}

func TestControlSubmitVerificationError(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	p := approvedPayment(t, s, c)
	r := do(t, "POST", s.ControlURL+"/payments/"+p.Identifier+"/submit", "", `{"verification_error":"payment_already_linked_with_a_tx"}`)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	got := mustPayment(t, s, p.Identifier)
	_, err := c.Complete(t.Context(), p.Identifier, got.TxID())
	assert.Equal(t, "verification_failed", piclient.ErrorCode(err))
	assert.Equal(t, "payment_already_linked_with_a_tx", piclient.VerificationError(err))
}
