package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// The attacks of issue "Hostile clients, round three", each through a real
// Caddy with the default configuration (no bind_user). A stranger knows a
// payment's id and txid (both public) and has none of the payer's cookies.

// stranger is a request with none of the payer's cookies.
var stranger = []string{"Cookie", ""}

// quietPost posts a stranger's JSON body from a goroutine of its own,
// where a test must not fail: the outcome is checked afterwards.
func quietPost(path, body string) {
	resp, err := http.Post(caddyBase+path, "application/json", strings.NewReader(body))
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// fromApp reports whether a client's answer is the app's own.
func fromApp(body map[string]any) bool { return body["upstream"] == true }

// The stranger who completes first triggers the delivery, but the app's
// answer (the goods) goes to the payer only: now and on every replay.
func TestStrangerNeverReceivesTheGoods(t *testing.T) {
	e := setup(t)
	for _, route := range []string{"/payments/complete", "/payments/incomplete"} {
		id, txid := e.submitted()
		body := `{"paymentId":"` + id + `","txid":"` + txid + `"}`
		if route == "/payments/incomplete" {
			body = `{"payment":{"identifier":"` + id + `"}}` // no txid needed
		}
		status, got := e.post(route, body, stranger...)
		require.Equal(t, http.StatusOK, status, "%s: %v", route, got)
		assert.False(t, fromApp(got), "%s: the stranger gets the guard's answer, not the app's: %v", route, got)
		assert.Equal(t, true, got["completed"])
		assert.Equal(t, 1, e.verifiedDeliveries(id), "%s: the app heard of the payment", route)

		// The payer's own complete, cookies reordered and an analytics
		// cookie changed, gets the app's answer.
		status, got = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid},
			"Cookie", "_ga=GA1.2.99; "+payerCookie+"; theme=dark")
		require.Equal(t, http.StatusOK, status, "%v", got)
		assert.True(t, fromApp(got), "%s: the payer gets the app's answer: %v", route, got)

		// More stranger replays: the guard's answer, and never the app.
		before := len(e.up.requests())
		for _, who := range [][]string{stranger, {"Cookie", "it_session=payer-0123456789abcdeX"}, {"Cookie", "", "Authorization", "Bearer guess"}} {
			status, got = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid}, who...)
			require.Equal(t, http.StatusOK, status)
			assert.False(t, fromApp(got), "%v: %v", who, got)
		}
		assert.Equal(t, before, len(e.up.requests()), "a stranger's replays of a delivered payment never reach the app")
	}
}

// A payment completed before (its record gone, as after retention) is a
// replay for answer purposes: a stranger never gets the app's answer. (In
// the files layout, where removing the record by hand is one file.)
func TestStrangerAfterRetentionGetsNoGoods(t *testing.T) {
	e := setup(t, "record_layout files")
	id, txid := e.submitted()
	status, got := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", got)
	require.True(t, fromApp(got))
	var records []string
	e.waitFor("the delivered record", func() bool {
		records, _ = filepath.Glob(filepath.Join(e.storage, "pi_guard", "*", "payments", id+".json"))
		return len(records) == 1
	})
	require.NoError(t, os.Remove(records[0])) // retention removed it

	status, got = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid}, stranger...)
	require.Equal(t, http.StatusOK, status, "%v", got)
	assert.False(t, fromApp(got), "%v", got)
}

// A stranger's route variant or form body decides nothing: the app gets
// the canonical request on its own route, in the payer's shape.
func TestStrangerCannotSteerWhatIsDelivered(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	form := "paymentId=" + id + "&txid=" + txid + "&order=stranger"
	status, got := e.send(http.MethodPost, "/Payments/Complete/", "application/x-www-form-urlencoded", []byte(form), stranger...)
	require.Equal(t, http.StatusOK, status, "%v", got)
	var delivered *recorded
	for _, r := range e.up.requests() {
		if r.Verified != nil && r.Verified.Subject == id {
			delivered = &r
		}
	}
	require.NotNil(t, delivered)
	assert.Equal(t, "/payments/complete", delivered.Path, "the configured route, not the stranger's variant")
	assert.JSONEq(t, `{"paymentId":"`+id+`","txid":"`+txid+`"}`, string(delivered.Body), "the canonical body, in the payer's JSON")
	assert.Equal(t, "application/json", delivered.Header.Get("Content-Type"))

	// The payer's own complete: the app's answer, from the same record.
	status, got = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", got)
	assert.True(t, fromApp(got))
	assert.Equal(t, 1, e.pi.CallsFor(pitest.EndpointComplete, id))
}

// Paths an app's router or file server may take for a payment route are
// answered 404 by the guard and never reach the app.
func TestNearMatchesOfRoutesNeverReachTheApp(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	body := []byte(`{"paymentId":"` + id + `","txid":"` + txid + `"}`)
	for _, p := range []string{
		"/payments/complete.xml", "/payments/complete.html", "/payments/complete.js",
		"/payments/x/..;/complete", "/payments%5ccomplete", "/payments/complete.", "/payments/complete%20",
		"/payments/complete%00", "/payments/complete%00.json", "/payments/complete%2e",
		"/paymentſ/complete", "/payments/approve.php", "/payments/%C4%B1ncomplete",
	} {
		status, got := e.send(http.MethodPost, p, "application/json", body)
		assert.Equal(t, http.StatusNotFound, status, "%s: %v", p, got)
		assert.Equal(t, "not_a_payment_route", got["error"], p)
	}
	for _, r := range e.up.requests() {
		assert.Contains(t, []string{"/payments/approve"}, r.Path, "only the approval reached the app")
	}
}

// Headers that change how the body is read come once on payment routes.
func TestRepeatedBodyHeadersAreRefused(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	for _, hdr := range [][]string{
		{"Content-Type", "application/x-www-form-urlencoded"},
		{"Content-Encoding", "identity", "Content-Encoding", "gzip"},
	} {
		status, got := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid}, hdr...)
		assert.Equal(t, http.StatusBadRequest, status, "%v: %v", hdr, got)
		assert.Equal(t, "ambiguous_request", got["error"])
	}
	assert.Zero(t, e.verifiedDeliveries(id))
}

// Approve never forwards a stranger, never re-approves what is done, and
// never moves the watch entry's times.
func TestApproveRefusesWhatIsDone(t *testing.T) {
	e := setup(t)
	p := e.approved(pitest.NewPayment{Amount: "1"})
	e.waitFor("the watch entry", func() bool { return len(e.watched()) == 1 })
	first := e.watched()[0]["next_check"]
	seen := len(e.up.requests())

	status, got := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier}, stranger...)
	assert.Equal(t, http.StatusConflict, status, "%v", got)
	assert.Equal(t, "already_approved", got["error"])
	assert.Equal(t, seen, len(e.up.requests()), "the stranger's approve never reached the app")

	status, got = e.post("/payments/approve", map[string]string{"paymentId": p.Identifier}, "Cookie", "a=b; "+payerCookie)
	assert.Equal(t, http.StatusOK, status, "the payer's SDK asks again: %v", got)
	time.Sleep(1200 * time.Millisecond) // a watch batch
	assert.Equal(t, first, e.watched()[0]["next_check"], "the watch entry's times never move")

	_, err := e.pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	status, got = e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
	assert.Equal(t, http.StatusConflict, status, "%v", got)
	assert.Equal(t, "transaction_present", got["error"])
	id, txid := e.submitted()
	status, _ = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status)
	seen = len(e.up.requests())
	for _, who := range [][]string{stranger, nil} {
		status, got = e.post("/payments/approve", map[string]string{"paymentId": id}, who...)
		assert.Equal(t, http.StatusConflict, status, "%v", got)
		assert.Equal(t, "already_completed", got["error"])
	}
	assert.Equal(t, seen, len(e.up.requests()), "no app call")
}

// A flood of a stranger's incomplete posts for a known payment shares Pi
// reads and never holds the payment's lock: its owner's approve goes
// through at once.
func TestIncompleteFloodNeverDelaysTheOwner(t *testing.T) {
	e := setup(t, "timeout 20s") // the default: a request waits up to 5 s for a payment's lock
	p := e.pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	approveThroughGuard(e, p.Identifier) // the owner started paying
	fresh := e.pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	e.pi.SetLatency(200 * time.Millisecond)
	defer e.pi.SetLatency(0)
	e.pi.ResetCalls()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				quietPost("/payments/incomplete", `{"payment":{"identifier":"`+p.Identifier+`"}}`)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	status, got := e.post("/payments/approve", map[string]string{"paymentId": fresh.Identifier})
	// The SDK asks again for the flooded payment while its wallet waits.
	start := time.Now()
	status2, got2 := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
	took := time.Since(start)
	close(stop)
	wg.Wait()
	require.Equal(t, http.StatusOK, status, "%v", got)
	require.Equal(t, http.StatusOK, status2, "the owner's approve of the flooded payment: %v", got2)
	assert.Less(t, took, 2*time.Second, "the owner's approve never queues behind the flood")
	gets := e.pi.CallsFor(pitest.EndpointGet, p.Identifier)
	assert.Less(t, gets, 20, "the flood shares Pi reads (one per %s at most)", "500ms")
}

// Random ids from one client are bounded per client (429, Retry-After),
// and a payer on another address goes through during the flood.
func TestRandomIDsCannotBurnThePiQuota(t *testing.T) {
	e := setup(t, "lookup_rate_per_client 5", "lookup_rate 40")
	e.pi.ResetCalls()
	limited := 0
	for i := range 200 {
		id := fmt.Sprintf("rAnd0mPaymentId%013d", i)
		status, got := e.post("/payments/approve", map[string]string{"paymentId": id}, stranger...)
		if status == http.StatusTooManyRequests {
			limited++
			assert.Equal(t, "rate_limited", got["error"])
		}
	}
	assert.Greater(t, limited, 150, "most of the flood is refused")
	assert.LessOrEqual(t, e.pi.Calls(pitest.EndpointGet), 40, "Pi saw only the allowed lookups")

	// The payer, from another loopback address.
	p := e.pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	req, _ := http.NewRequest(http.MethodPost, caddyBase+"/payments/approve", strings.NewReader(`{"paymentId":"`+p.Identifier+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cookie", payerCookie)
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the payer goes through")
}

// 200 stranger replays of a delivered payment reach the app not once.
func TestStrangerReplaysAreBounded(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	status, _ := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				quietPost("/payments/complete", `{"paymentId":"`+id+`","txid":"`+txid+`"}`)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, e.verifiedDeliveries(id), "only the payer's own completion reached the app")
}

// With bind_user, random tokens cost Pi /me calls only within the limits.
func TestRandomTokensAreBounded(t *testing.T) {
	e := setup(t, "bind_user", "lookup_rate_per_client 5")
	p := e.pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	e.pi.ResetCalls()
	for i := range 100 {
		e.post("/payments/approve", map[string]string{"paymentId": p.Identifier}, "Authorization", fmt.Sprintf("Bearer random-%d", i))
	}
	assert.LessOrEqual(t, e.pi.Calls(pitest.EndpointMe), 25, "random tokens are bounded")
}

// Legitimate flows keep working: a CORS preflight on a payment route is the
// app's to answer, and the reference SDK's incomplete body with Pi's own
// link goes through, while a posted link of another server is refused.
func TestPreflightAndPostedLink(t *testing.T) {
	e := setup(t)
	req, _ := http.NewRequest(http.MethodOptions, caddyBase+"/payments/complete", nil)
	req.Header.Set("Origin", "http://localhost:3000")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := e.tester.Client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the app answered the preflight")
	last := e.up.requests()[len(e.up.requests())-1]
	assert.Equal(t, http.MethodOptions, last.Method)

	id, txid := e.submitted()
	status, got := e.post("/payments/incomplete", incompleteBody(id, txid, "http://127.0.0.1:1/internal", "3.14"), stranger...)
	assert.Equal(t, http.StatusConflict, status, "%v", got)
	assert.Equal(t, "link_mismatch", got["error"])
	assert.Zero(t, e.verifiedDeliveries(id))
	p, _ := e.pi.Payment(id)
	status, got = e.post("/payments/incomplete", incompleteBody(id, txid, p.Transaction.Link, "3.14"))
	require.Equal(t, http.StatusOK, status, "%v", got)
	assert.True(t, fromApp(got), "the payer's own incomplete post gets the app's answer: %v", got)
	assert.Equal(t, 1, e.verifiedDeliveries(id))
}
