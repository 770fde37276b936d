package piguard

// Regression tests from the second security review of the payer binding
// (branch review2). Each fails on main at 4dc1392.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// Review2 finding A: a stranger's replays of a completed payment need no Pi
// call and pass no limit, yet each takes the payment's locks (in-process and
// storage). A flood of them queues the payer's own replay behind it.
func TestReview2StrangerReplayFloodLocksOutPayer(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	app := newCapturingApp(t, http.StatusOK)
	p := pi.CreatePayment(pitest.NewPayment{Amount: "3"})
	w := post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	w = post(h, app, DefaultCompletePath, completeBody(p.Identifier, txid))
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	stranger := "app_session=stranger-fedcba9876543210"
	var stop atomic.Bool
	var wg sync.WaitGroup
	var n atomic.Int64
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				post(h, app, DefaultCompletePath, completeBody(p.Identifier, txid), "Cookie", stranger)
				n.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	worst := time.Duration(0)
	codes := map[int]int{}
	for range 5 {
		start := time.Now()
		w = post(h, app, DefaultCompletePath, completeBody(p.Identifier, txid))
		worst = max(worst, time.Since(start))
		codes[w.Code]++
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("stranger replays: %d; payer's replays: %v, worst %v", n.Load(), codes, worst)
	assert.Equal(t, map[int]int{http.StatusOK: 5}, codes, "the payer's replays were refused while strangers flooded")
	assert.Less(t, worst, time.Second, "the payer's replay waited on strangers' replays")
}

// Review2 finding B: a stranger's read of a payment whose approver the guard
// knows goes through peek's shared view, which calls Pi directly: neither the
// per-client bound on Pi calls (4 x lookup_rate_per_client) nor the lookup
// limits see it. One client cycling over the ids of payments in flight (ids
// are public) costs one Pi GET per id per 500 ms, however many ids.
func TestReview2StrangerViewsBypassPerClientCallBound(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	app := newCapturingApp(t, http.StatusOK)
	send := func(ip, target, body, cookie string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		r.RemoteAddr = ip + ":1234"
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Cookie", cookie)
		w := httptest.NewRecorder()
		require.NoError(t, h.ServeHTTP(w, r, app))
		return w
	}
	// Payments approved by their payers (each from its own address), in flight.
	const n = 60
	ids := make([]string, n)
	for i := range n {
		p := pi.CreatePayment(pitest.NewPayment{})
		w := send(fmt.Sprintf("198.51.100.%d", i+1), DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`,
			fmt.Sprintf("app_session=payer-%d-0123456789abcdef", i))
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		ids[i] = p.Identifier
	}
	pi.ResetCalls()
	// One stranger, one address, for 2 s: the incomplete route, no transaction.
	stranger := "app_session=stranger-fedcba9876543210"
	deadline := time.Now().Add(2 * time.Second)
	posts := 0
	for time.Now().Before(deadline) {
		for _, id := range ids {
			send("203.0.113.9", DefaultIncompletePath, `{"payment":{"identifier":"`+id+`"}}`, stranger)
			posts++
		}
		time.Sleep(20 * time.Millisecond)
	}
	calls := pi.Calls(pitest.EndpointGet)
	// 4 x 5/s with a burst of 4 s: 81 + 2 s x 20 = 121 at most.
	bound := int(4*DefaultLookupRatePerClient*lookupBurst) + 1 + int(2*4*DefaultLookupRatePerClient)
	t.Logf("%d posts from one client cost %d Pi GETs (bound %d)", posts, calls, bound)
	assert.LessOrEqual(t, calls, bound, "one client caused Pi calls beyond its bound")
}

// Review2 finding C: the shared bound on made-up ids applies only to
// clients already remembered in `missing`, a FIFO map of 10,000 clients. A
// client's first made-up id is never under it, and an attacker with more
// than 10,000 IPv6 /64s (one /48 has 65,536) cycles through them so that
// each one's entry (and its per-client limiter) is evicted before it comes
// back: every made-up id is then a "first" one, and the app's Pi quota is
// bounded by nothing but the attacker's request rate.
func TestReview2ManyPrefixesEvadeTheSharedLookupBound(t *testing.T) {
	l := newLookups(DefaultLookupRate, DefaultLookupRatePerClient)
	req := func(i int) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = fmt.Sprintf("[2001:db8:1:%x::1]:1234", i) // one /48, many /64s
		return r
	}
	admitted := 0
	const clients = 12000
	for range 3 { // three passes over the /64s, all within a second or two
		for i := range clients {
			r := req(i)
			if l.admit(r) == nil {
				admitted++
				l.missed(r) // Pi: not found
			}
		}
	}
	// The shared bound allows 4 s x 50/s (burst 200) plus what refills.
	t.Logf("%d made-up ids admitted to Pi from one /48", admitted)
	assert.Less(t, admitted, 2000, "made-up ids from one /48 reached Pi far beyond lookup_rate")
}

// Review2 finding D: while the app refuses a completed payment, a
// stranger's replay is forwarded whenever the next attempt is due. A failed
// client attempt only ever moves the next attempt earlier, never from the
// past into the future, so once it is due (always, without redeliver_to:
// no worker moves it) every stranger replay reaches the app, each with a
// storage write: a stranger floods the app with verified completions.
func TestReview2StrangerReplaysFloodAFailingApp(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := &Handler{APIKey: "pitest-api-key", APIURL: pi.URL, Network: piclient.NetworkTestnet, SigningKey: unitSigningKey,
		RedeliverBackoff: caddyDuration(100 * time.Millisecond), Timeout: caddyDuration(2 * time.Second)}
	h.logger = zap.NewNop()
	require.NoError(t, h.provision(testStorage(t)))
	require.NoError(t, h.Validate())
	t.Cleanup(func() { _ = h.Cleanup() })
	app := newCapturingApp(t, http.StatusOK)
	p := pi.CreatePayment(pitest.NewPayment{Amount: "3"})
	w := post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	app.set(http.StatusInternalServerError, nil) // the app is down for a while
	w = post(h, app, DefaultCompletePath, completeBody(p.Identifier, txid))
	require.Equal(t, http.StatusBadGateway, w.Code, w.Body.String())
	time.Sleep(2200 * time.Millisecond) // the first retry is due (grace: max(2 x backoff, timeout))

	before := len(app.requests())
	stranger := "app_session=stranger-fedcba9876543210"
	for range 100 {
		post(h, app, DefaultCompletePath, completeBody(p.Identifier, txid), "Cookie", stranger)
	}
	reached := len(app.requests()) - before
	t.Logf("100 stranger replays within a moment: %d reached the app", reached)
	assert.LessOrEqual(t, reached, 2, "a stranger's replays flooded the app")
}

// Review2 finding E: a completion recorded by an instance that does not know
// the approver yet (the approving instance's watch entry is written in
// batches, or its write failed) stores no payer at all: the record's Payer
// stays empty forever, so the payer's retry, on any instance, is a
// stranger's. README promises that "the payer's retry gets the answer".
func TestReview2CompletionBeforeWatchWriteLosesThePayerForever(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	storage := testStorage(t)
	mk := func() *Handler {
		h := &Handler{APIKey: "pitest-api-key", APIURL: pi.URL, Network: piclient.NetworkTestnet, SigningKey: unitSigningKey}
		h.logger = zap.NewNop()
		require.NoError(t, h.provision(storage))
		require.NoError(t, h.Validate())
		t.Cleanup(func() { _ = h.Cleanup() })
		return h
	}
	a, b := mk(), mk()
	app := newCapturingApp(t, http.StatusOK)
	p := pi.CreatePayment(pitest.NewPayment{Amount: "3"})
	w := post(a, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	// The payer's completion reaches the other instance at once (a fast
	// wallet behind a load balancer).
	w = post(b, app, DefaultCompletePath, completeBody(p.Identifier, txid))
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	if strings.Contains(w.Body.String(), "app's own answer") {
		t.Skip("the watch entry was written before the completion: no race this time")
	}
	time.Sleep(1500 * time.Millisecond) // the watch entry is surely written now
	for _, h := range []*Handler{a, b} {
		w = post(h, app, DefaultCompletePath, completeBody(p.Identifier, txid))
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Contains(t, w.Body.String(), "app's own answer", "the payer's retry was treated as a stranger's: the goods are withheld forever")
	}
}

// Review2 finding F: the approver is remembered with the Set-Cookie of the
// app's approve answer applied, even when that answer never reaches the
// browser. When Pi's approve answer and re-read are lost, the guard answers
// 502 (retry) without the app's headers, so the browser keeps its old
// session cookie, but the guard remembers the new one: the payer's retry is
// refused (409 already_approved) and its completion treated as a stranger's.
func TestReview2LostApproveWithRotatedCookieLocksOutPayer(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	app := newCapturingApp(t, http.StatusOK)
	app.set(http.StatusOK, http.Header{"Set-Cookie": {"app_session=payer-rotated-0123456789abcdef; Path=/; HttpOnly"}})
	p := pi.CreatePayment(pitest.NewPayment{Amount: "2"})
	faulty := handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		pi.InjectFault(pitest.EndpointApprove, pitest.Fault{DropResponse: true, Times: 1})
		pi.InjectFault(pitest.EndpointGet, pitest.Fault{Status: http.StatusServiceUnavailable, Times: 50})
		return app.ServeHTTP(w, r)
	})
	w := post(h, faulty, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`) // payerCookie
	pi.ClearFaults()
	require.Equal(t, http.StatusBadGateway, w.Code, w.Body.String())
	require.Empty(t, w.Header().Get("Set-Cookie"), "the browser never got the new cookie")

	// The browser retries with the cookie it has.
	w = post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	assert.Equal(t, http.StatusOK, w.Code, "the payer's retry, as told: %s", w.Body.String())
	cookie := payerCookie
	if sc := w.Header().Get("Set-Cookie"); sc != "" {
		cookie = strings.SplitN(sc, ";", 2)[0]
	}
	app.set(http.StatusOK, nil)
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	time.Sleep(600 * time.Millisecond) // past the shared view a stranger is answered from
	w = post(h, app, DefaultCompletePath, completeBody(p.Identifier, txid), "Cookie", cookie)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Contains(t, w.Body.String(), "app's own answer", "the payer was treated as a stranger")
}
