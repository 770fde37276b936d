package pitest_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

func decodePayment(t *testing.T, r rawResponse) piclient.Payment {
	t.Helper()
	var p piclient.Payment
	require.NoError(t, json.Unmarshal(r.body, &p), "%s", r.body)
	return p
}

func TestControlPaymentLifecycle(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)

	r := do(t, "POST", s.ControlURL+"/payments", "", `{"amount": 2.5, "memo": "tea", "metadata": {"k": 1}, "user_uid": "u7"}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	p := decodePayment(t, r)
	assert.Regexp(t, reID, p.Identifier)
	assert.Equal(t, piclient.Amount("2.5"), p.Amount)
	assert.Equal(t, "tea", p.Memo)
	assert.JSONEq(t, `{"k":1}`, string(p.Metadata))
	assert.Equal(t, "u7", p.UserUID)
	assert.Equal(t, piclient.NetworkTestnet, p.Network)
	assert.Equal(t, piclient.DirectionUserToApp, p.Direction)

	r = do(t, "POST", s.ControlURL+"/payments/"+p.Identifier+"/submit", "", "")
	assert.Equal(t, http.StatusConflict, r.status)
	code, _ := r.errorBody(t)
	assert.Equal(t, "not_approved", code)

	_, err := c.Approve(t.Context(), p.Identifier)
	require.NoError(t, err)
	r = do(t, "POST", s.ControlURL+"/payments/"+p.Identifier+"/submit", "", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	paid := decodePayment(t, r)
	require.NotNil(t, paid.Transaction)
	assert.Regexp(t, reTxID, paid.Transaction.TxID)
	assert.True(t, paid.Status.TransactionVerified)

	r = do(t, "POST", s.ControlURL+"/payments/"+p.Identifier+"/submit", "", "")
	assert.Equal(t, http.StatusConflict, r.status)
	code, _ = r.errorBody(t)
	assert.Equal(t, "already_submitted", code)

	r = do(t, "GET", s.ControlURL+"/payments/"+p.Identifier, "", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, paid, decodePayment(t, r))

	r = do(t, "POST", s.ControlURL+"/payments/"+p.Identifier+"/user_cancel", "", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.True(t, decodePayment(t, r).Status.UserCancelled)

	r = do(t, "GET", s.ControlURL+"/payments", "", "")
	require.Equal(t, http.StatusOK, r.status)
	var list struct{ Payments []piclient.Payment }
	require.NoError(t, json.Unmarshal(r.body, &list))
	require.Len(t, list.Payments, 1)
	assert.Equal(t, p.Identifier, list.Payments[0].Identifier)
}

func TestControlSubmitOverrides(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	p := approvedPayment(t, s, c)
	r := do(t, "POST", s.ControlURL+"/payments/"+p.Identifier+"/submit", "", `{"amount":"0.1","memo":"m","to":"GX","failed":true,"unverified":true}`)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	got := decodePayment(t, r)
	assert.False(t, got.Transaction.Verified)
	assert.False(t, got.Status.TransactionVerified)
	var ops horizonOps
	getHorizon(t, s.HorizonURL+"/transactions/"+got.TxID()+"/operations", &ops)
	assert.Equal(t, "0.1000000", ops.Embedded.Records[0].Amount)
	assert.Equal(t, "GX", ops.Embedded.Records[0].To)
	assert.False(t, ops.Embedded.Records[0].TransactionSuccessful)
}

func TestControlErrors(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/payments", `{"amount":"abc"}`, 400, "invalid_request"},
		{"POST", "/payments", `{"amount":"-1"}`, 400, "invalid_request"},
		{"POST", "/payments", `{"amount":1,"colour":"red"}`, 400, "invalid_request"},
		{"POST", "/payments", `{"direction":"up"}`, 400, "invalid_request"},
		{"POST", "/payments", `not json`, 400, "invalid_request"},
		{"GET", "/payments/nope", "", 404, "payment_not_found"},
		{"POST", "/payments/nope/submit", "", 404, "payment_not_found"},
		{"POST", "/payments/nope/user_cancel", "", 404, "payment_not_found"},
		{"POST", "/faults", `{"endpoint":"refund","status":500}`, 400, "invalid_request"},
		{"POST", "/faults", `{"endpoint":"get","status":700}`, 400, "invalid_request"},
		{"POST", "/users", `{"uid":"u"}`, 400, "invalid_request"},
		{"POST", "/latency", `{"latency_ms":-1}`, 400, "invalid_request"},
		{"PUT", "/payments", "", 405, "method_not_allowed"},
		{"GET", "/payments/x/submit", "", 405, "method_not_allowed"},
		{"GET", "/nothing", "", 404, "not_found"},
	} {
		r := do(t, c.method, s.ControlURL+c.path, "", c.body)
		assert.Equal(t, c.status, r.status, "%s %s %s", c.method, c.path, r.body)
		code, _ := r.errorBody(t)
		assert.Equal(t, c.code, code, "%s %s", c.method, c.path)
		assert.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"))
	}
}

func TestControlFaultsCallsUsersLatency(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id := s.CreatePayment(pitest.NewPayment{}).Identifier

	r := do(t, "POST", s.ControlURL+"/faults", "", `{"endpoint":"complete","status":500,"times":1}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r = do(t, "POST", s.ControlURL+"/faults", "", `{"endpoint":"get","drop":true}`)
	require.Equal(t, http.StatusCreated, r.status)
	_, err := c.Complete(t.Context(), id, otherTxID)
	assert.Equal(t, 500, piclient.StatusCode(err))
	// A fresh client: Go's transport would replay a GET dropped on a reused
	// keep-alive connection, counting it twice.
	_, err = newClient(t, s).GetPayment(t.Context(), id)
	assert.True(t, piclient.IsUnavailable(err))

	r = do(t, "DELETE", s.ControlURL+"/faults", "", "")
	assert.Equal(t, http.StatusNoContent, r.status)
	_, err = c.GetPayment(t.Context(), id)
	assert.NoError(t, err)

	r = do(t, "GET", s.ControlURL+"/calls", "", "")
	require.Equal(t, http.StatusOK, r.status)
	var calls map[string]int
	require.NoError(t, json.Unmarshal(r.body, &calls))
	assert.Equal(t, map[string]int{"get": 2, "approve": 0, "complete": 1, "cancel": 0, "incomplete": 0, "me": 0, "horizon": 0}, calls)
	r = do(t, "DELETE", s.ControlURL+"/calls", "", "")
	assert.Equal(t, http.StatusNoContent, r.status)
	assert.Zero(t, s.Calls(pitest.EndpointGet))

	r = do(t, "POST", s.ControlURL+"/users", "", `{"uid":"u1","access_token":"t1","username":"zed"}`)
	require.Equal(t, http.StatusCreated, r.status)
	u, err := c.Me(t.Context(), "t1")
	require.NoError(t, err)
	assert.Equal(t, "zed", u.Username)

	r = do(t, "POST", s.ControlURL+"/latency", "", `{"latency_ms":5}`)
	assert.Equal(t, http.StatusOK, r.status)

	r = do(t, "GET", s.ControlURL+"/info", "", "")
	require.Equal(t, http.StatusOK, r.status)
	var info map[string]string
	require.NoError(t, json.Unmarshal(r.body, &info))
	assert.Equal(t, s.URL, info["api_url"])
	assert.Equal(t, s.HorizonURL, info["horizon_url"])
	assert.Equal(t, s.Wallet, info["wallet"])
	assert.NotContains(t, string(r.body), s.APIKey)
}

func TestControlCORS(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	req, err := http.NewRequestWithContext(t.Context(), "OPTIONS", s.ControlURL+"/payments", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "http://demo.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "DELETE")
	assert.Equal(t, "Content-Type", resp.Header.Get("Access-Control-Allow-Headers"))

	r := do(t, "POST", s.ControlURL+"/payments", "", `{}`)
	assert.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"))
	assert.Zero(t, s.Calls(pitest.EndpointGet))
}
