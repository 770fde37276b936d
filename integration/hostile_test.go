package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// The attacks of a stranger who knows a payment id (issue "Hostile clients,
// round two"), each performed through a real Caddy.

// setupBehind is setup with the Pi API reached through wrap (a proxy that
// rewrites Pi's answers).
func setupBehind(t *testing.T, wrap func(http.Handler) http.Handler, extra ...string) *env {
	t.Helper()
	pi := pitest.NewServer(pitest.Options{APIKey: testAPIKey, Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	front := httptest.NewServer(wrap(pi.Handler()))
	t.Cleanup(front.Close)
	storage, err := os.MkdirTemp("", "pi-guard-it-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(storage) })
	e := &env{t: t, pi: pi, up: newUpstream(t), tester: caddytest.NewTester(t), storage: storage, extra: extra}
	e.tester.InitServer(caddyfile(storage, front.URL+"/v2", e.up.URL, strings.Join(extra, "\n\t\t")), "caddyfile")
	return e
}

// Attack 1: cancelling a stranger's payment through the incomplete route.
// The payment is approved, its owner is in the wallet, not yet paid.
func TestStrangerCannotCancelAFreshPayment(t *testing.T) {
	e := setup(t)
	p := e.approved(pitest.NewPayment{})
	status, body := e.post("/payments/incomplete", `{"payment":{"identifier":"`+p.Identifier+`"}}`)
	assert.Equal(t, http.StatusConflict, status, "%v", body)
	assert.Equal(t, "payment_in_progress", body["error"])
	assert.Equal(t, true, body["retryable"])
	assert.Zero(t, e.pi.Calls(pitest.EndpointCancel), "Pi is not asked to cancel")

	// The owner's wallet submits and the completion goes through.
	txid, err := e.pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	status, body = e.post("/payments/complete", map[string]string{"paymentId": p.Identifier, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, 1, e.verifiedDeliveries(p.Identifier))
}

// A payment without a transaction long after the wallet gave up is
// cancelled for anyone; with bind_user its owner may cancel it at once, and
// a stranger's approval the app rejects never cancels it.
func TestIncompleteCancelPolicy(t *testing.T) {
	e := setup(t, "cancel_incomplete_after 300ms")
	p := e.approved(pitest.NewPayment{})
	time.Sleep(400 * time.Millisecond)
	status, body := e.post("/payments/incomplete", `{"payment":{"identifier":"`+p.Identifier+`"}}`)
	require.Equal(t, http.StatusOK, status, "a stale payment is cancelled and the app gets a notice: %v", body)
	got, _ := e.pi.Payment(p.Identifier)
	assert.True(t, got.IsCancelled())
	last := e.up.requests()[len(e.up.requests())-1]
	require.NotNil(t, last.Notice)
	assert.Equal(t, "incomplete", last.Notice.Phase)

	e.extra = []string{"bind_user", "cancel_rejected"}
	e.load()
	e.pi.ResetCalls()
	e.pi.AddUser("alice", "alice-token", "alice")
	e.pi.AddUser("mallory", "mallory-token", "mallory")
	owned := e.pi.CreatePayment(pitest.NewPayment{UserUID: "alice"})
	status, body = e.post("/payments/incomplete", `{"payment":{"identifier":"`+owned.Identifier+`"}}`, "Authorization", "Bearer mallory-token")
	assert.Equal(t, http.StatusForbidden, status, "%v", body)
	e.up.approveStatus = http.StatusPaymentRequired // the app rejects whatever mallory's session asks
	status, _ = e.post("/payments/approve", map[string]string{"paymentId": owned.Identifier}, "Authorization", "Bearer mallory-token")
	assert.Equal(t, http.StatusForbidden, status)
	assert.Zero(t, e.pi.Calls(pitest.EndpointCancel), "no stranger got it cancelled")
	status, body = e.post("/payments/incomplete", `{"payment":{"identifier":"`+owned.Identifier+`"}}`, "Authorization", "Bearer alice-token")
	require.Equal(t, http.StatusOK, status, "the owner cancels at once; the app's answer to the notice reaches her: %v", body)
	got, _ = e.pi.Payment(owned.Identifier)
	assert.True(t, got.IsCancelled())
}

// Attack 2: "Connection: Pi-Payment-Verified" would make reverse_proxy drop
// the guard's own header as hop-by-hop.
func TestConnectionHeaderCannotDeleteTheVerifiedHeader(t *testing.T) {
	e := setup(t)
	for i, conn := range []string{"Pi-Payment-Verified", "keep-alive, pi_payment_verified", "PI-PAYMENT-NOTICE"} {
		id, txid := e.submitted()
		status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid}, "Connection", conn)
		require.Equal(t, http.StatusOK, status, "%s: %v", conn, body)
		assert.Equal(t, 1, e.verifiedDeliveries(id), "%d %q: the app got the verified header", i, conn)
	}
}

// rawPost sends a chunked HTTP/1.1 request with trailers straight over TCP
// and returns the status line.
func rawPost(t *testing.T, path, contentType, body string, trailers map[string]string) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(caddyBase, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	var names []string
	for k := range trailers {
		names = append(names, k)
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\nTrailer: %s\r\nConnection: close\r\n\r\n",
		path, contentType, strings.Join(names, ", "))
	fmt.Fprintf(conn, "%x\r\n%s\r\n0\r\n", len(body), body)
	for k, v := range trailers {
		fmt.Fprintf(conn, "%s: %s\r\n", k, v)
	}
	fmt.Fprint(conn, "\r\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(line)
}

// Attack 3: the verified header as a request trailer.
func TestTrailersCannotCarryTheVerifiedHeader(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = r.Trailer.Clone()
		mu.Unlock()
	}))
	defer app.Close()
	e := setup(t)
	e.tester.InitServer(caddyfile(e.storage, e.pi.URL, app.URL, ""), "caddyfile")

	status := rawPost(t, "/upload", "text/plain", "data", map[string]string{"Pi-Payment-Verified": "forged", "X-Sum": "1"})
	require.Contains(t, status, "200")
	mu.Lock()
	assert.Equal(t, "1", seen.Get("X-Sum"), "other trailers pass")
	assert.Empty(t, seen.Get("Pi-Payment-Verified"), "the guard's header never reaches the app as a trailer")
	mu.Unlock()

	p := e.pi.CreatePayment(pitest.NewPayment{})
	status = rawPost(t, "/payments/approve", "application/json", `{"paymentId":"`+p.Identifier+`"}`, map[string]string{"X-Sum": "1"})
	assert.Contains(t, status, "400", "payment routes refuse trailers")
	assert.Zero(t, e.pi.Calls(pitest.EndpointGet))
}

// Attack 4: one body, two readings. The guard would verify payment A while
// a Go app (case-insensitive, last one wins) reads payment B.
func TestOneBodyCannotNameTwoPayments(t *testing.T) {
	e := setup(t)
	a, txid := e.submitted()
	b := e.pi.CreatePayment(pitest.NewPayment{Amount: "1000"})
	for _, body := range []string{
		fmt.Sprintf(`{"paymentId":%q,"txid":%q,"PAYMENTID":%q}`, a, txid, b.Identifier),
		fmt.Sprintf(`{"paymentId":%q,"txid":%q,"payment\u0049d":%q}`, a, txid, b.Identifier),
	} {
		status, resp := e.post("/payments/complete", body)
		assert.Equal(t, http.StatusBadRequest, status, "%s: %v", body, resp)
	}
	status, resp := e.post("/payments/incomplete", fmt.Sprintf(`{"payment":{"identifier":%q,"IDENTIFIER":%q}}`, a, b.Identifier))
	assert.Equal(t, http.StatusBadRequest, status, "%v", resp)
	status, resp = e.post("/payments/complete?paymentId="+b.Identifier, map[string]string{"paymentId": a, "txid": txid})
	assert.Equal(t, http.StatusBadRequest, status, "the query may not name another payment: %v", resp)
	status, resp = e.send(http.MethodPost, "/payments/complete", "", []byte(fmt.Sprintf(`{"paymentId":%q,"txid":%q}`, a, txid)))
	assert.Equal(t, http.StatusUnsupportedMediaType, status, "no Content-Type, which an app's JSON parser would not read: %v", resp)
	assert.Zero(t, e.verifiedDeliveries(a))
	assert.Zero(t, e.pi.Calls(pitest.EndpointComplete))
}

// Attack 5: ninety completes with a wrong txid for the victim's payment,
// with Pi answering in 200 ms, must not make the victim's own completion
// fail; and repeating an unknown id must not cost a Pi call each time.
func TestFloodDoesNotStarveTheOwner(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	e.pi.SetLatency(200 * time.Millisecond)
	wrong := strings.Repeat("ab", 32)
	var wg sync.WaitGroup
	for range 90 {
		wg.Go(func() {
			_, _ = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": wrong})
		})
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	took := time.Since(start)
	wg.Wait()
	if status == http.StatusConflict && body["error"] == "payment_busy" {
		// Allowed: the flood held the payment; the client retries, as told.
		status, body = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	}
	require.Equal(t, http.StatusOK, status, "the owner's completion goes through (after %v): %v", took, body)
	assert.Equal(t, 1, e.verifiedDeliveries(id))
	assert.LessOrEqual(t, e.pi.Calls(pitest.EndpointComplete), 3, "the flood costs Pi a handful of calls, not ninety")

	e.pi.SetLatency(0)
	e.pi.ResetCalls()
	for range 30 {
		status, _ := e.post("/payments/cancelled_payment", map[string]string{"paymentId": "nosuchpayment0000000000000000"})
		require.Equal(t, http.StatusNotFound, status)
	}
	assert.LessOrEqual(t, e.pi.Calls(pitest.EndpointGet), 2, "an unknown id is remembered for a few seconds")
}

// Attack 7 (belt and braces): Pi's answers say developer_completed with the
// txid but not that the transaction is verified.
func TestNoVerifiedHeaderWithoutPiVerifiedTransaction(t *testing.T) {
	e := setupBehind(t, unverified)
	id, txid := e.submitted()
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	assert.Equal(t, http.StatusConflict, status, "%v", body)
	assert.Equal(t, "transaction_not_verified", body["error"])
	assert.Zero(t, e.verifiedDeliveries(id))
}

// unverified passes Pi's answers on with every PaymentDTO's verification
// flags cleared.
func unverified(pi http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		pi.ServeHTTP(rec, r)
		body := strings.ReplaceAll(rec.Body.String(), `"transaction_verified":true`, `"transaction_verified":false`)
		body = strings.ReplaceAll(body, `"verified":true`, `"verified":false`)
		w.Header().Set("Content-Type", rec.Header().Get("Content-Type"))
		w.WriteHeader(rec.Code)
		_, _ = io.WriteString(w, body)
	})
}

// Route variants: a frontend posting to /payments/complete/ or
// /PAYMENTS/complete (one route for Express) is guarded, never passed on
// unguarded.
func TestRouteVariantsAreGuarded(t *testing.T) {
	e := setup(t)
	for _, path := range []string{"/payments/complete/", "/PAYMENTS/complete"} {
		id, txid := e.submitted()
		status, body := e.post(path, map[string]string{"paymentId": id, "txid": txid})
		require.Equal(t, http.StatusOK, status, "%s: %v", path, body)
		assert.Equal(t, 1, e.verifiedDeliveries(id), path)
		got, _ := e.pi.Payment(id)
		assert.True(t, got.Status.DeveloperCompleted, path)
	}
}

// With the app down, approve answers the guard's JSON, not an empty 502.
func TestApproveWithAppDownAnswersJSON(t *testing.T) {
	e := setup(t)
	e.up.Close()
	p := e.pi.CreatePayment(pitest.NewPayment{})
	status, body := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
	assert.Equal(t, http.StatusBadGateway, status, "%v", body)
	assert.Equal(t, "upstream_unavailable", body["error"])
	assert.Equal(t, true, body["retryable"])
	assert.Zero(t, e.pi.Calls(pitest.EndpointApprove))
}
