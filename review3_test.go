package piguard

// Regression tests from the security review of "hostile clients, round
// three". Each one performs an attack that worked against main at 51d530a;
// they fail there and pass once the finding is fixed.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// sharedLBCookie is the cookie Caddy's own `reverse_proxy { lb_policy cookie }`
// sets: "lb" = hex HMAC-SHA256 of the upstream's address, the same value for
// every client routed to that upstream (Traefik's sticky cookie and a
// site-wide basic_auth Authorization header are the same kind of thing).
const sharedLBCookie = "lb=9ec11b292f1bf3254be0e966bb6e4aa8582664e97a1280e3b851e3afdf5ec2cf"

// Finding 1: a cookie every visitor has is not the payer's credential. A
// stranger who got the same "lb" cookie by visiting the site must not get
// the app's answer to the payer's completion (the goods), must not reach the
// app with replays, and must not decide what is recorded when completing first.
func TestReviewSharedCookieIsNotThePayersCredential(t *testing.T) {
	for _, strangerFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("strangerFirst=%v", strangerFirst), func(t *testing.T) {
			pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
			defer pi.Close()
			h := newTestHandler(t, pi.URL)
			app := newCapturingApp(t, http.StatusOK)
			payer := payerCookie + "; " + sharedLBCookie
			stranger := "app_session=stranger-fedcba9876543210; " + sharedLBCookie

			p := pi.CreatePayment(pitest.NewPayment{Amount: "3"})
			w := post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`, "Cookie", payer)
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
			txid, err := pi.SubmitTransaction(p.Identifier)
			require.NoError(t, err)

			if !strangerFirst {
				w = post(h, app, DefaultCompletePath, completeBody(p.Identifier, txid), "Cookie", payer)
				require.Equal(t, http.StatusOK, w.Code, w.Body.String())
				require.Contains(t, w.Body.String(), "app's own answer", "the payer gets the app's answer")
			}
			before := len(app.requests())
			w = post(h, app, DefaultCompletePath,
				`{"paymentId":"`+p.Identifier+`","txid":"`+txid+`","note":"the stranger's"}`, "Cookie", stranger)
			assert.NotContains(t, w.Body.String(), "app's own answer", "a stranger carrying only a cookie every visitor has got the goods")
			assert.Contains(t, w.Body.String(), `"completed":true`)
			if strangerFirst {
				reqs := app.requests()
				require.Greater(t, len(reqs), before)
				assert.NotContains(t, string(reqs[len(reqs)-1].body), "the stranger's", "the stranger decided the delivered body")
				assert.Empty(t, reqs[len(reqs)-1].header.Get("Cookie"), "the stranger's cookies reached the app with a verified header")
			} else {
				assert.Equal(t, before, len(app.requests()), "a stranger's replay of a delivered payment reached the app")
			}
		})
	}
}

// Finding 2: Pi approves, but its answer and the re-read are lost (the guard
// answers pi_unavailable, "retry the request"). The payer's retry must be
// accepted, and the payer must get the app's answer to the completion.
func TestReviewPayerRetryAfterLostApproveAnswer(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	app := newCapturingApp(t, http.StatusOK)
	p := pi.CreatePayment(pitest.NewPayment{Amount: "2"})

	// The app accepts the notice; while it does, Pi starts losing answers:
	// /approve is performed but its answer dropped, and every read fails.
	faulty := handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		pi.InjectFault(pitest.EndpointApprove, pitest.Fault{DropResponse: true, Times: 1})
		pi.InjectFault(pitest.EndpointGet, pitest.Fault{Status: http.StatusServiceUnavailable, Times: 50})
		return app.ServeHTTP(w, r)
	})
	w := post(h, faulty, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	pi.ClearFaults()
	require.Equal(t, http.StatusBadGateway, w.Code, w.Body.String())
	got, _ := pi.Payment(p.Identifier)
	require.True(t, got.Status.DeveloperApproved, "Pi did approve")

	w = post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	assert.Equal(t, http.StatusOK, w.Code, "the payer's retry, as the guard's answer told it to: %s", w.Body.String())

	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	w = post(h, app, DefaultCompletePath, completeBody(p.Identifier, txid))
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Contains(t, w.Body.String(), "app's own answer", "the payer was treated as a stranger: the goods were withheld")
}

type handlerFunc func(http.ResponseWriter, *http.Request) error

func (f handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

// Finding 3: Pi calls for a payment id the guard has seen are not bounded at
// all: one client posting completions with made-up txids for an approved
// payment without a transaction (its own, or any it knows) costs one Pi
// GET per request, beyond lookup_rate_per_client.
func TestReviewKnownIdCompletionFloodIsBounded(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	app := newCapturingApp(t, http.StatusOK)
	p := pi.CreatePayment(pitest.NewPayment{})
	w := post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	pi.ResetCalls()
	const n = 60
	for range n {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		w = post(h, app, DefaultCompletePath, completeBody(p.Identifier, hex.EncodeToString(b)), "Cookie", "")
		require.NotEqual(t, http.StatusOK, w.Code)
	}
	calls := pi.Calls(pitest.EndpointGet) + pi.Calls(pitest.EndpointComplete)
	// lookup_rate_per_client allows a burst of 4 s x 5/s (+1).
	assert.LessOrEqual(t, calls, 21, "%d posts from one client cost %d Pi calls", n, calls)
}

// Finding 4: the shared lookup bucket lets clients that each stay under
// lookup_rate_per_client lock every new payer out, and an IPv6 client is
// one address, not its /64.
func TestReviewLookupBucketCannotBeDrainedByManyAddresses(t *testing.T) {
	req := func(ip string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = "[" + ip + "]:1234"
		if !strings.Contains(ip, ":") {
			r.RemoteAddr = ip + ":1234"
		}
		return r
	}
	l := newLookups(DefaultLookupRate, DefaultLookupRatePerClient)
	// One host with a /64: 300 addresses, 3 new ids each (under the
	// per-client burst).
	for i := range 300 {
		for range 3 {
			_ = l.admit(req(fmt.Sprintf("2001:db8:1:2::%x", i+1)))
		}
	}
	assert.Nil(t, l.admit(req("198.51.100.7")), "a payer on another network is locked out: 429 for a payment it just created")
}

// Finding 5: apps whose session lives in a signed or encrypted cookie (Rails'
// CookieStore, Flask, express cookie-session, iron-session) re-issue the
// cookie with a new value whenever their approve handler writes the session
// (to note the pending order, say). The payer's completion then carries the
// new value, the guard knows only the old one, and the payer is treated as a
// stranger. The guard sees the Set-Cookie of the app's approve answer and
// could remember it.
func TestReviewPayerWhoseSessionCookieTheAppRotatesAtApprove(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	app := newCapturingApp(t, http.StatusOK)
	rotated := "app_session=payer-rotated-0123456789abcdef"
	app.set(http.StatusOK, http.Header{"Set-Cookie": {rotated + "; Path=/; HttpOnly"}})
	p := pi.CreatePayment(pitest.NewPayment{})
	w := post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`) // with payerCookie
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Contains(t, w.Header().Get("Set-Cookie"), "payer-rotated", "the browser gets the new session cookie")
	app.set(http.StatusOK, nil)
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	w = post(h, app, DefaultCompletePath, completeBody(p.Identifier, txid), "Cookie", rotated)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Contains(t, w.Body.String(), "app's own answer", "the payer, carrying the session cookie the app itself just set, was treated as a stranger")
}
