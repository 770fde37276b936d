package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/bench/loadgen"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

func newTestBaseline(t *testing.T) (*pitest.Server, *httptest.Server) {
	t.Helper()
	pi := pitest.NewServer()
	t.Cleanup(pi.Close)
	srv := httptest.NewServer(newGoBaseline(pi.URL, pi.APIKey))
	t.Cleanup(srv.Close)
	return pi, srv
}

// The load generator's whole flow (create, approve, submit, complete) works
// against the Go baseline, with the Node baseline's 3 Pi calls per payment.
func TestGoBaselineFlow(t *testing.T) {
	pi, srv := newTestBaseline(t)
	f := &flower{guard: srv.URL, control: pi.ControlURL, client: loadgen.NewClient(4), ctl: loadgen.NewClient(4)}
	var w worker
	for range 3 {
		require.NoError(t, f.flow(context.Background(), &w))
	}
	require.Len(t, w.ids, 3)
	for _, id := range w.ids {
		p, ok := pi.Payment(id)
		require.True(t, ok, id)
		assert.True(t, p.Status.DeveloperApproved, id)
		assert.True(t, p.Status.DeveloperCompleted, id)
	}
	calls, err := f.calls(context.Background())
	require.NoError(t, err)
	total := 0
	for _, n := range calls {
		total += n
	}
	assert.Equal(t, 3*piCallsPerFlow, total, "calls per endpoint: %v", calls)
}

func post(t *testing.T, url, contentType, body string) (int, string, string) {
	t.Helper()
	resp, err := http.Post(url, contentType, strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(data)
}

// The answers and status codes of server.js.
func TestGoBaselineAnswers(t *testing.T) {
	pi, srv := newTestBaseline(t)
	p := pi.CreatePayment(pitest.NewPayment{Amount: "1", Memo: "test"})

	code, ct, body := post(t, srv.URL+"/payments/approve", "application/json", `{"paymentId":"`+p.Identifier+`"}`)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "application/json; charset=utf-8", ct)
	assert.JSONEq(t, `{"message":"Approved the payment `+p.Identifier+`"}`, body)

	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	// Express routes ignore case and a trailing slash.
	code, _, body = post(t, srv.URL+"/Payments/Complete/", "application/json; charset=utf-8",
		`{"paymentId":"`+p.Identifier+`","txid":"`+txid+`"}`)
	assert.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `{"message":"Completed the payment `+p.Identifier+`"}`, body)

	// Pi answers 404 for an unknown payment: axios's error, 500.
	code, _, body = post(t, srv.URL+"/payments/approve", "application/json", `{"paymentId":"nope"}`)
	assert.Equal(t, http.StatusInternalServerError, code)
	assert.JSONEq(t, `{"error":"pi_error","message":"Request failed with status code 404"}`, body)
	// No JSON Content-Type: no body, paymentId "", and Pi refuses it.
	code, _, body = post(t, srv.URL+"/payments/complete", "text/plain", `{"paymentId":"x"}`)
	assert.Equal(t, http.StatusInternalServerError, code)
	assert.Contains(t, body, `"error":"pi_error"`)

	// express.json(): 400 for what is not a JSON object or array, 413 above 100 KiB.
	for _, bad := range []string{`{"paymentId":`, `"a string"`, `null`, `[1,`} {
		code, ct, _ = post(t, srv.URL+"/payments/approve", "application/json", bad)
		assert.Equal(t, http.StatusBadRequest, code, bad)
		assert.Equal(t, "text/html; charset=utf-8", ct)
	}
	code, _, _ = post(t, srv.URL+"/payments/approve", "application/json", `{"x":"`+strings.Repeat("a", jsonBodyLimit)+`"}`)
	assert.Equal(t, http.StatusRequestEntityTooLarge, code)

	// Other routes and methods: 404.
	resp, err := http.Get(srv.URL + "/payments/approve")
	require.NoError(t, err)
	drain(resp)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, err = http.Get(srv.URL + "/hello")
	require.NoError(t, err)
	drain(resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestJSString(t *testing.T) {
	for in, want := range map[string]string{
		`{"paymentId":"abc","txid":"t"}`: "abc",
		`{"paymentId":null}`:             "",
		`{}`:                             "",
		`{"paymentId":42}`:               "42",
		`{"paymentId":"a\u00e9"}`:        "aé",
	} {
		var b paymentBody
		require.NoError(t, json.Unmarshal([]byte(in), &b), in)
		assert.Equal(t, want, string(b.PaymentID), in)
	}
}
