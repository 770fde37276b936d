package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// deliveries reads GET /pi_guard/deliveries from Caddy's admin API.
func (e *env) deliveries(query string) []map[string]any {
	e.t.Helper()
	resp, err := http.Get("http://localhost:2999/pi_guard/deliveries" + query)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	require.Equal(e.t, http.StatusOK, resp.StatusCode, string(data))
	var out []map[string]any
	require.NoError(e.t, json.Unmarshal(data, &out))
	return out
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// When the app fails after Pi completed the payment, the client hears so,
// and the background worker delivers the stored request until the app
// accepts it.
func TestRedeliveryAfterAppFailure(t *testing.T) {
	e := setup(t)
	e.extra = []string{"redeliver_to " + e.up.URL, "redeliver_backoff 50ms"}
	e.load()
	id, txid := e.submitted()
	e.up.failNext(2)
	body := `{"paymentId":"` + id + `","txid":"` + txid + `","note":"keep me"}`
	status, answer := e.post("/payments/complete", body)
	assert.Equal(t, http.StatusBadGateway, status, "the app did not accept it: the guard says so")
	assert.Equal(t, "upstream_refused", answer["error"])

	e.waitFor("redelivery", func() bool { return e.verifiedDeliveries(id) == 1 })
	reqs := e.up.requests()
	last := reqs[len(reqs)-1]
	assert.Equal(t, body, string(last.Body), "the stored request is re-sent byte for byte")
	assert.Equal(t, "/payments/complete", last.Path)
	assert.Equal(t, "application/json", last.Header.Get("Content-Type"))
	e.waitFor("the record to be marked delivered", func() bool { return len(e.deliveries("")) == 0 })
	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointComplete), "redelivery never calls Pi again")
}

// A payment whose every delivery fails is listed as exhausted by the admin API.
func TestExhaustedDeliveriesAreListed(t *testing.T) {
	e := setup(t)
	e.extra = []string{"redeliver_to " + e.up.URL, "redeliver_backoff 20ms", "redeliver_attempts 3"}
	e.load()
	id, txid := e.submitted()
	e.up.failNext(1000)
	status, _ := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusBadGateway, status)
	e.waitFor("exhaustion", func() bool { return len(e.deliveries("?state=exhausted")) == 1 })
	row := e.deliveries("?state=exhausted")[0]
	assert.Equal(t, id, row["payment_id"])
	assert.Equal(t, txid, row["txid"])
	assert.EqualValues(t, 3, row["attempts"])
	assert.Equal(t, "3.14", row["amount"])
	assert.Empty(t, e.deliveries("?state=pending"))

	// The user comes back: a repeated complete is replayed from the record.
	e.up.failNext(0)
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", body)
	e.waitFor("an accepted delivery to settle the record", func() bool { return len(e.deliveries("")) == 0 })
	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointComplete))
}

// Records survive a config reload: a completion recorded before the reload
// is replayed after it without another Pi completion, and an owed delivery
// is still delivered.
func TestRecordsSurviveReload(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	e.up.failNext(1)
	status, _ := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusBadGateway, status)
	require.Len(t, e.deliveries("?state=pending"), 1)

	e.extra = []string{"redeliver_to " + e.up.URL, "redeliver_backoff 50ms"}
	e.load() // reload with redelivery on: the new instance picks up the debt
	e.waitFor("redelivery after reload", func() bool { return e.verifiedDeliveries(id) == 1 })
	e.waitFor("settled", func() bool { return len(e.deliveries("")) == 0 })

	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, 2, e.verifiedDeliveries(id))
	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointComplete))
}

// When the app cannot be reached at all, the client gets a clear, retryable
// answer that says the payment is complete.
func TestUnreachableAppGetsClearAnswer(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	e.up.Close()
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	assert.Equal(t, http.StatusBadGateway, status)
	assert.Equal(t, "upstream_unavailable", body["error"])
	assert.Equal(t, true, body["retryable"])
	require.Len(t, e.deliveries("?state=pending"), 1)
}
