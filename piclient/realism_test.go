package piclient_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// Bodies the real Pi Platform API was seen to send, quoted from public
// traces (see piclient/pitest/doc.go for the sources).
const (
	// pi-apps/pi-ruby#4: no error_message.
	realVerificationMemo   = `{"error": "verification_failed", "verification_error": "tx_memo_payment_identifier_mismatch"}`
	realVerificationLinked = `{"error": "verification_failed", "verification_error": "payment_already_linked_with_a_tx"}`
	// pi-apps/pi-ruby#4, answering a cancel.
	realTxPresent = `{"error": "payment_tx_present", "error_message": "You cannot cancel this payment, because an associated blockchain transaction has been recorded."}`
	// pi-apps/pi-platform-docs#27 and #29: Pi's front servers, HTTP 500,
	// content-type: text/html; charset=UTF-8 (styles shortened).
	realRails500 = `<!DOCTYPE html>
<html>
<head>
  <title>We're sorry, but something went wrong (500)</title>
  <meta name="viewport" content="width=device-width,initial-scale=1">
  <style>
  .rails-default-error-page {
    background-color: #EFEFEF;
  }
  </style>
</head>
<body class="rails-default-error-page">
</body>
</html>
`
	// A PaymentDTO as Pi returned it (pi-apps/pi-ruby#4 and
	// pi-apps/pi-platform-docs#154): amount a float, created_at with
	// milliseconds, a 28-character id, a UUID user_uid, transaction null,
	// and a field the documentation does not list.
	realPaymentDTO = `{"identifier": "jGCjzZqgg78B6Pf1wzYHFSBTqNIv", "user_uid": "38633a57-2388-49e0-a000-e325ef03c451",
		"amount": 1.0, "memo": "From app to user test", "metadata": {"test": "your metadata"},
		"from_address": "GAORGY7GWJYSARCO7KZH3QRX2FQKD25KQSTQJPKWE7WZTEBBHTSUDAA5",
		"to_address": "GAORGY7GWJYSARCO7KZH3QRX2FQKD25KQSTQJPKWE7WZTEBBHTSUDAA5",
		"direction": "app_to_user", "created_at": "2026-03-21T14:11:19.804Z", "network": "Pi Testnet",
		"status": {"developer_approved": true, "transaction_verified": false, "developer_completed": false,
		"cancelled": false, "user_cancelled": false}, "transaction": null, "split_recipients": null}`
	realID = "jGCjzZqgg78B6Pf1wzYHFSBTqNIv"
)

func TestVerificationFailedKeepsItsReason(t *testing.T) {
	for body, reason := range map[string]string{
		realVerificationMemo:   "tx_memo_payment_identifier_mismatch",
		realVerificationLinked: "payment_already_linked_with_a_tx",
	} {
		t.Run(reason, func(t *testing.T) {
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusBadRequest, body) })
			_, err := newClient(t, f.URL()).Complete(context.Background(), testID, testTxID)
			require.Error(t, err)
			assert.True(t, piclient.IsRejected(err), "Pi said no")
			assert.Equal(t, "verification_failed", piclient.ErrorCode(err))
			assert.Equal(t, reason, piclient.VerificationError(err))
			var e *piclient.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, reason, e.VerificationError)
			assert.Empty(t, e.Message, "Pi sent no error_message")
			assert.Equal(t, "pi api complete payment "+testID+": HTTP 400 verification_failed (verification_error "+reason+")", err.Error())
			assert.Equal(t, 1, f.Hits(), "a refusal is not retried")
		})
	}
	assert.Empty(t, piclient.VerificationError(nil))
}

func TestCancelRefusals(t *testing.T) {
	paid := strings.Replace(fullPaymentJSON(testID), `"developer_completed": false`, `"developer_completed": true`, 1)
	cases := map[string]struct {
		body, code, message string
		payment             bool
	}{
		"payment_tx_present": {realTxPresent, "payment_tx_present",
			"You cannot cancel this payment, because an associated blockchain transaction has been recorded.", false},
		// The Node SDK's types: these three come with the payment.
		"already_completed": {`{"error":"already_completed","error_message":"Payment already completed","payment":` + paid + `}`,
			"already_completed", "Payment already completed", true},
		"cancelled_payment": {`{"error":"cancelled_payment","error_message":"Payment already cancelled","payment":` + fullPaymentJSON(testID) + `}`,
			"cancelled_payment", "Payment already cancelled", true},
		"forbidden": {`{"error":"forbidden","error_message":"Forbidden","payment":` + fullPaymentJSON(testID) + `}`,
			"forbidden", "Forbidden", true},
		"payment not decodable": {`{"error":"forbidden","error_message":"Forbidden","payment":{"amount":"x"}}`,
			"forbidden", "Forbidden", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusBadRequest, tc.body) })
			_, err := newClient(t, f.URL()).Cancel(context.Background(), testID)
			require.Error(t, err)
			assert.True(t, piclient.IsRejected(err))
			var e *piclient.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, tc.message, e.Message)
			if tc.payment {
				require.NotNil(t, e.Payment)
				assert.Equal(t, testID, e.Payment.Identifier)
				assert.Equal(t, testTxID, e.Payment.TxID())
			} else {
				assert.Nil(t, e.Payment)
			}
		})
	}
}

// An HTML page is not Pi's word, whatever its status: the call is
// unavailable (never rejected, never "not found"), and a state-changing call
// is not repeated (it may have taken effect).
func TestHTMLErrorPagesAreUnavailable(t *testing.T) {
	nginx := func(status int) string {
		return "<html>\r\n<head><title>" + http.StatusText(status) + "</title></head>\r\n<body><center>nginx</center></body>\r\n</html>\r\n"
	}
	for _, tc := range []struct {
		status int
		body   string
	}{
		{500, realRails500}, {404, nginx(404)}, {403, nginx(403)}, {401, nginx(401)}, {400, nginx(400)}, {502, nginx(502)},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=UTF-8")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			c := newClient(t, f.URL(), withRetries(2))
			_, err := c.Complete(context.Background(), testID, testTxID)
			require.Error(t, err)
			assert.True(t, piclient.IsUnavailable(err))
			assert.False(t, piclient.IsRejected(err))
			assert.False(t, piclient.IsNotFound(err))
			assert.False(t, piclient.IsUnauthorized(err))
			assert.ErrorIs(t, err, piclient.ErrNotAPIError)
			assert.Equal(t, tc.status, piclient.StatusCode(err))
			assert.Empty(t, piclient.ErrorCode(err))
			assert.Contains(t, err.Error(), "(text/html)")
			assert.Equal(t, 1, f.Hits(), "a POST that may have taken effect is not repeated")

			_, err = c.GetPayment(context.Background(), testID)
			assert.ErrorIs(t, err, piclient.ErrNotAPIError)
			assert.Equal(t, 1+3, f.Hits(), "a read is retried")
		})
	}
}

func TestRealPaymentDTODecodes(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, realPaymentDTO) })
	p, err := newClient(t, f.URL()).GetPayment(context.Background(), realID)
	require.NoError(t, err)
	assert.Equal(t, piclient.Amount("1.0"), p.Amount, "the amount's text is kept")
	assert.Zero(t, p.Amount.Cmp("1"), "and compares exactly")
	assert.Equal(t, "38633a57-2388-49e0-a000-e325ef03c451", p.UserUID)
	assert.Equal(t, "2026-03-21T14:11:19.804Z", p.CreatedAt)
	assert.Nil(t, p.Transaction)
	assert.Empty(t, p.TxID())
	assert.JSONEq(t, `{"test": "your metadata"}`, string(p.Metadata))
	assert.True(t, p.Status.DeveloperApproved)

	// Amounts as a float prints them stay exact decimals.
	for text, same := range map[string]string{"1.0": "1", "0.42": "0.420", "1e-05": "0.00001", "3.14": "3.14", "1e+16": "10000000000000000"} {
		var q piclient.Payment
		require.NoError(t, json.Unmarshal([]byte(`{"amount": `+text+`}`), &q), text)
		assert.Equal(t, piclient.Amount(text), q.Amount)
		assert.Zero(t, q.Amount.Cmp(piclient.Amount(same)), "%s = %s", text, same)
	}
}
