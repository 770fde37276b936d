package integration

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// withQueries puts a recorder of query strings in front of the app and
// reloads Caddy onto it.
func (e *env) withQueries() func() []string {
	var mu sync.Mutex
	var queries []string
	serve := e.up.serve
	e.up.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		serve(w, r)
	}))
	e.t.Cleanup(e.up.Close)
	e.load()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), queries...)
	}
}

// Attack (issue 11.6, and round three): a stranger who knows a completed
// payment's id (and txid) replays it, on the complete route and on the
// incomplete route, with a body, cookie, query and headers of their own.
// A delivered payment's replays by a stranger never reach the app; the
// payer's own replay delivers the payer's stored request, never anything
// of the stranger's.
func TestReplayByStrangerDeliversTheStoredRequest(t *testing.T) {
	e := setup(t)
	queries := e.withQueries()
	id, txid := e.submitted()
	payerBody := `{"paymentId":"` + id + `","txid":"` + txid + `","order":"payer's order"}`
	status, body := e.post("/payments/complete", payerBody, "Cookie", payerCookie+"; ab=1")
	require.Equal(t, http.StatusOK, status, "%v", body)

	stranger := []string{"Cookie", "session=stranger-0123456789abcdef", "Authorization", "Bearer stranger", "X-Credit-To", "stranger"}
	strangerBody := `{"paymentId":"` + id + `","txid":"` + txid + `","order":"stranger's order"}`
	status, body = e.post("/payments/complete", strangerBody, stranger...)
	require.Equal(t, http.StatusOK, status, "%v", body)
	status, body = e.post("/payments/incomplete", `{"payment":{"identifier":"`+id+`"}}`, stranger...)
	require.Equal(t, http.StatusOK, status, "%v", body)
	status, _ = e.post("/payments/incomplete?credit=stranger", `{"payment":{"identifier":"`+id+`"}}`, stranger...)
	require.Equal(t, http.StatusBadRequest, status, "a query string is refused on payment routes")
	// The payer comes back on the incomplete route, with the stranger's
	// extra header: the stored request goes.
	status, body = e.post("/payments/incomplete", `{"payment":{"identifier":"`+id+`"}}`, "X-Credit-To", "stranger")
	require.Equal(t, http.StatusOK, status, "%v", body)

	reqs := e.up.requests()
	var verified []recorded
	for _, r := range reqs {
		if r.Verified != nil {
			verified = append(verified, r)
		}
	}
	require.Len(t, verified, 2, "the stranger's replays never reached the app")
	assert.Equal(t, payerCookie+"; ab=1", verified[0].Header.Get("Cookie"))
	r := verified[1]
	require.NoError(t, r.VerifyErr)
	assert.Equal(t, payerBody, string(r.Body), "the replay delivers the payer's body")
	assert.Equal(t, "/payments/complete", r.Path)
	for _, k := range []string{"Cookie", "Authorization", "X-Credit-To"} {
		assert.Empty(t, r.Header.Get(k), "the replay carries no %s", k)
	}
	for _, q := range queries() {
		assert.Empty(t, q, "no query string reaches the app on a payment route")
	}
	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointComplete))
}

// Issue 14.3: when the app answers a verified delivery with 500 (or 403),
// the client gets the guard's JSON 502 upstream_refused (retryable), the
// payment stays owed, and no background attempt has been used up.
func TestAppRefusingDeliveryGetsGuardAnswer(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	for _, code := range []int{http.StatusInternalServerError, http.StatusForbidden} {
		e.up.mu.Lock()
		e.up.status = code
		e.up.mu.Unlock()
		status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
		assert.Equal(t, http.StatusBadGateway, status, "%v", body)
		assert.Equal(t, "upstream_refused", body["error"], "%v", body)
		assert.Equal(t, true, body["retryable"])
		assert.Nil(t, body["upstream"], "the app's own answer is not passed on")
	}
	rows := e.deliveries("?state=pending")
	require.Len(t, rows, 1)
	assert.Equal(t, id, rows[0]["payment_id"])
	assert.EqualValues(t, 0, rows[0]["attempts"], "client attempts are not background attempts")

	e.up.mu.Lock()
	e.up.status = http.StatusOK
	e.up.mu.Unlock()
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", body)
	e.waitFor("the record to settle", func() bool { return len(e.deliveries("")) == 0 })
}
