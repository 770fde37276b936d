package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// TestIntegrationRuns fails loudly where caddytest would silently skip, so a
// run that proves nothing cannot pass for one that does.
func TestIntegrationRuns(t *testing.T) {
	if testing.Short() {
		t.Fatal("the integration tests are the proof of the guard: run them without -short")
	}
	e := setup(t)
	status, _ := e.send(http.MethodGet, "/", "", nil)
	require.Equal(t, http.StatusOK, status, "Caddy must be serving the test config")
}

func TestHappyPath(t *testing.T) {
	e := setup(t)
	p := e.pi.CreatePayment(pitest.NewPayment{Amount: "3.14", Memo: "apple pie", Metadata: []byte(`{"orderId":42}`)})

	status, body := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status, "%v", body)
	got, _ := e.pi.Payment(p.Identifier)
	assert.True(t, got.Status.DeveloperApproved, "the guard approved the payment at Pi")

	reqs := e.up.requests()
	require.Len(t, reqs, 1, "approve is forwarded so the app can record the pending order")
	assert.Nil(t, reqs[0].Verified, "approve never carries the verified header")
	assert.Empty(t, reqs[0].Header.Get(verify.HeaderVerified))
	require.NotNil(t, reqs[0].Notice, "approve carries a valid notice")
	assert.Equal(t, p.Identifier, reqs[0].Notice.Subject)
	assert.Equal(t, "approve", reqs[0].Notice.Phase)
	assert.False(t, reqs[0].Notice.Payment.Status.DeveloperApproved, "the app sees the payment before the guard approves it")

	txid, err := e.pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	completeBody := fmt.Sprintf(`{"paymentId": %q,  "txid": %q, "cart": [1, 2, 3]}`, p.Identifier, txid)
	status, body = e.post("/payments/complete", completeBody)
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, true, body["verified"], "the app saw a valid verified header")

	reqs = e.up.requests()
	require.Len(t, reqs, 2)
	c := reqs[1]
	require.NoError(t, c.VerifyErr)
	require.NotNil(t, c.Verified)
	assert.Equal(t, p.Identifier, c.Verified.Subject)
	assert.Equal(t, "complete", c.Verified.Phase)
	assert.True(t, c.Verified.Payment.Status.DeveloperCompleted)
	assert.Equal(t, txid, c.Verified.Payment.TxID())
	assert.Equal(t, piclient.Amount("3.14"), c.Verified.Payment.Amount)
	assert.JSONEq(t, `{"orderId":42}`, string(c.Verified.Payment.Metadata))
	assert.Equal(t, completeBody, string(c.Body), "the body reaches the upstream byte for byte")
	assert.Equal(t, "/payments/complete", c.Verified.Path)
	assert.Empty(t, c.Header.Get(verify.HeaderNotice))

	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointApprove))
	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointComplete))
	assert.LessOrEqual(t, e.pi.Calls(pitest.EndpointGet)+e.pi.Calls(pitest.EndpointApprove)+e.pi.Calls(pitest.EndpointComplete), 4,
		"a payment costs one read and one write per phase")
}

func TestFormBodyIsAccepted(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	form := "paymentId=" + id + "&txid=" + txid + "&note=hello+world"
	status, body := e.send(http.MethodPost, "/payments/complete", "application/x-www-form-urlencoded", []byte(form))
	require.Equal(t, http.StatusOK, status, "%v", body)
	reqs := e.up.requests()
	last := reqs[len(reqs)-1]
	require.NotNil(t, last.Verified)
	assert.Equal(t, form, string(last.Body))
}

func TestForgedHeadersAreStripped(t *testing.T) {
	e := setup(t)
	forged := forgedToken(t)

	// A non-payment route: passes through, minus the forged headers.
	status, _ := e.send(http.MethodGet, "/orders", "", nil, verify.HeaderVerified, forged, verify.HeaderNotice, forged, "pi-payment-verified", "lowercase")
	require.Equal(t, http.StatusOK, status)
	// A payment route that the guard refuses: never reaches the upstream.
	status, _ = e.post("/payments/complete", `{"paymentId":"nope","txid":"00"}`, verify.HeaderVerified, forged)
	require.Equal(t, http.StatusBadRequest, status)
	// A payment route the guard forwards (approve): forged copies are gone.
	p := e.pi.CreatePayment(pitest.NewPayment{})
	status, _ = e.post("/payments/approve", map[string]string{"paymentId": p.Identifier}, verify.HeaderVerified, forged)
	require.Equal(t, http.StatusOK, status)

	reqs := e.up.requests()
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		assert.Empty(t, r.Header.Values(verify.HeaderVerified), "%s %s", r.Method, r.Path)
		assert.Nil(t, r.Verified)
	}
	assert.Empty(t, reqs[0].Header.Values(verify.HeaderNotice), "a forged notice is stripped too")
}

// forgedToken is a token a client made itself: well formed, wrong key.
func forgedToken(t *testing.T) string {
	key, err := verify.HS256Key("", []byte("attacker-chosen-secret-0123456789abcdef"))
	require.NoError(t, err)
	s, err := verify.NewSigner(verify.SignerOptions{Keys: []verify.Key{key}})
	require.NoError(t, err)
	paid := &piclient.Payment{Identifier: "ForgedPayment1", Status: piclient.Status{DeveloperCompleted: true},
		Transaction: &piclient.Transaction{TxID: strings.Repeat("0", 64)}}
	tok, err := s.Sign(verify.KindVerified, "complete", paid, verify.Binding{Method: "GET", Path: "/orders"}, "")
	require.NoError(t, err)
	return tok
}

func TestRefusalsNeverReachTheUpstreamAsVerified(t *testing.T) {
	// Each case runs twice: for a payment this guard approved (it has a
	// record, and goes straight to Pi's /complete, whose answer decides) and
	// for one approved elsewhere (the guard reads it from Pi first).
	cases := []struct {
		name   string
		prep   func(e *env, approve approver) (id, txid string)
		faults func(e *env)
		status int
		code   string
		// completes is how many Pi /complete calls are allowed with and
		// without a record.
		completes, completesUnrecorded int
		// unrecordedOnly: the case is about the read a recorded payment skips.
		unrecordedOnly bool
	}{
		{
			name: "txid of another payment",
			prep: func(e *env, approve approver) (string, string) {
				id, _ := e.submitted(approve)
				_, other := e.submitted(approve)
				return id, other
			},
			status: http.StatusConflict, code: "txid_mismatch", completes: 1,
		},
		{
			name: "no transaction yet",
			prep: func(e *env, approve approver) (string, string) {
				p := e.pi.CreatePayment(pitest.NewPayment{})
				approve(e, p.Identifier)
				return p.Identifier, strings.Repeat("ab", 32)
			},
			status: http.StatusConflict, code: "no_transaction", completes: 1,
		},
		{
			name: "cancelled by the user",
			prep: func(e *env, approve approver) (string, string) {
				id, txid := e.submitted(approve)
				require.NoError(e.t, e.pi.UserCancel(id))
				return id, txid
			},
			status: http.StatusConflict, code: "payment_cancelled", completes: 1,
		},
		{
			name: "other network",
			prep: func(e *env, _ approver) (string, string) {
				p := e.pi.CreatePayment(pitest.NewPayment{Network: piclient.NetworkMainnet})
				return p.Identifier, strings.Repeat("cd", 32)
			},
			status: http.StatusConflict, code: "wrong_network",
		},
		{
			name: "unknown payment",
			prep: func(e *env, _ approver) (string, string) {
				return "UnknownPayment123", strings.Repeat("ef", 32)
			},
			status: http.StatusNotFound, code: "payment_not_found",
		},
		{
			name: "another app's payment",
			prep: func(e *env, _ approver) (string, string) {
				e.pi.AddApp("other-app-key")
				p := e.pi.CreatePayment(pitest.NewPayment{APIKey: "other-app-key"})
				return p.Identifier, strings.Repeat("ef", 32)
			},
			status: http.StatusNotFound, code: "payment_not_found",
		},
		{
			name:   "Pi 500 on complete",
			prep:   func(e *env, approve approver) (string, string) { return e.submitted(approve) },
			faults: func(e *env) { e.pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: 500}) },
			status: http.StatusBadGateway, code: "pi_unavailable", completes: 1, completesUnrecorded: 1,
		},
		{
			name:   "Pi times out on complete",
			prep:   func(e *env, approve approver) (string, string) { return e.submitted(approve) },
			faults: func(e *env) { e.pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Delay: 5 * time.Second}) },
			status: http.StatusGatewayTimeout, code: "pi_timeout", completes: 1, completesUnrecorded: 1,
		},
		{
			name: "Pi 503 on every call",
			prep: func(e *env, approve approver) (string, string) { return e.submitted(approve) },
			faults: func(e *env) {
				e.pi.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 503})
				e.pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: 503})
			},
			status: http.StatusBadGateway, code: "pi_unavailable", completes: 1, completesUnrecorded: 0,
		},
		{
			name: "malformed Pi answers",
			prep: func(e *env, approve approver) (string, string) { return e.submitted(approve) },
			faults: func(e *env) {
				e.pi.InjectFault(pitest.EndpointGet, pitest.Fault{Malformed: true})
				e.pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: 502})
			},
			status: http.StatusBadGateway, code: "pi_unavailable", completes: 1, completesUnrecorded: 0,
		},
		{
			name: "truncated Pi answers",
			prep: func(e *env, approve approver) (string, string) { return e.submitted(approve) },
			faults: func(e *env) {
				e.pi.InjectFault(pitest.EndpointGet, pitest.Fault{Truncated: true})
				e.pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: 502})
			},
			status: http.StatusBadGateway, code: "pi_unavailable", completes: 1, completesUnrecorded: 0,
		},
		{
			name:   "Pi times out on reads",
			prep:   func(e *env, approve approver) (string, string) { return e.submitted(approve) },
			faults: func(e *env) { e.pi.InjectFault(pitest.EndpointGet, pitest.Fault{Delay: 5 * time.Second}) },
			status: http.StatusGatewayTimeout, code: "pi_timeout", unrecordedOnly: true,
		},
	}
	for _, tc := range cases {
		for _, via := range []struct {
			name     string
			approve  approver
			recorded bool
		}{{"approved by the guard", approveThroughGuard, true}, {"approved elsewhere", approveAtPi, false}} {
			if tc.unrecordedOnly && via.recorded {
				continue
			}
			t.Run(tc.name+"/"+via.name, func(t *testing.T) {
				e := setup(t)
				id, txid := tc.prep(e, via.approve)
				before := len(e.up.requests())
				e.pi.ResetCalls()
				if tc.faults != nil {
					tc.faults(e)
				}
				status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
				assert.Equal(t, tc.status, status, "%v", body)
				assert.Equal(t, tc.code, body["error"], "%v", body)
				assert.NotEmpty(t, body["message"])
				assert.Len(t, e.up.requests(), before, "a refused completion never reaches the upstream")
				assert.Zero(t, e.verifiedDeliveries(id))
				allowed := tc.completesUnrecorded
				if via.recorded {
					allowed = tc.completes
				}
				assert.LessOrEqual(t, e.pi.Calls(pitest.EndpointComplete), allowed)
			})
		}
	}
}

func TestRetryAfterFailureSucceeds(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	e.pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: 503, Times: 1})
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusBadGateway, status, "%v", body)
	assert.Equal(t, true, body["retryable"])

	status, body = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, 1, e.verifiedDeliveries(id))
}

// When Pi completes the payment but its answer is lost, the guard learns the
// truth from a fresh read and still delivers the payment.
func TestLostCompletionAnswerIsRecoveredByReread(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	e.pi.InjectFault(pitest.EndpointComplete, pitest.Fault{DropResponse: true, Times: 1})
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, 1, e.verifiedDeliveries(id))
	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointComplete), "a POST whose answer was lost is not blindly repeated")
}

func TestRepeatedCompleteIsReplayedWithoutSecondPiCompletion(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	for i := 0; i < 3; i++ {
		status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
		require.Equal(t, http.StatusOK, status, "%v", body)
	}
	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointComplete))
	assert.Equal(t, 3, e.verifiedDeliveries(id))
}

func TestConcurrentCompletesMakeOnePiCompletion(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	const n = 20
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _ := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
			statuses <- status
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		assert.Equal(t, http.StatusOK, s)
	}
	assert.Equal(t, 1, e.pi.Calls(pitest.EndpointComplete))
	assert.Equal(t, n, e.verifiedDeliveries(id))
}

func TestApproveIsIdempotentAndRefusesBadPayments(t *testing.T) {
	e := setup(t)
	p := e.approved(pitest.NewPayment{})
	e.pi.ResetCalls()
	status, body := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Zero(t, e.pi.Calls(pitest.EndpointApprove), "an approved payment is not approved twice")

	cancelled := e.pi.CreatePayment(pitest.NewPayment{})
	require.NoError(t, e.pi.UserCancel(cancelled.Identifier))
	status, body = e.post("/payments/approve", map[string]string{"paymentId": cancelled.Identifier})
	assert.Equal(t, http.StatusConflict, status)
	assert.Equal(t, "payment_cancelled", body["error"])

	mainnet := e.pi.CreatePayment(pitest.NewPayment{Network: piclient.NetworkMainnet})
	status, body = e.post("/payments/approve", map[string]string{"paymentId": mainnet.Identifier})
	assert.Equal(t, http.StatusConflict, status)
	assert.Equal(t, "wrong_network", body["error"])
	assert.Zero(t, e.pi.Calls(pitest.EndpointApprove), "refused payments are never approved at Pi")
}

func TestRespondApproveAnswersWithoutUpstream(t *testing.T) {
	e := setup(t, "respond_approve")
	p := e.pi.CreatePayment(pitest.NewPayment{})
	status, body := e.post("/payments/approve", map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, true, body["approved"])
	assert.Empty(t, e.up.requests())
}

func TestBadInputIsRefusedWithoutCallingPi(t *testing.T) {
	e := setup(t)
	valid := strings.Repeat("ab", 32)
	cases := []struct {
		name, path, contentType, body string
		status                        int
		code                          string
	}{
		{"path traversal id", "/payments/complete", "application/json", `{"paymentId":"../x","txid":"` + valid + `"}`, 400, "invalid_payment_id"},
		{"slash in id", "/payments/approve", "application/json", `{"paymentId":"a/b"}`, 400, "invalid_payment_id"},
		{"encoded slash", "/payments/approve", "application/json", `{"paymentId":"a%2Fb"}`, 400, "invalid_payment_id"},
		{"very long id", "/payments/approve", "application/json", `{"paymentId":"` + strings.Repeat("a", 65) + `"}`, 400, "invalid_payment_id"},
		{"unicode id", "/payments/approve", "application/json", `{"paymentId":"paymént"}`, 400, "invalid_payment_id"},
		{"missing id", "/payments/approve", "application/json", `{}`, 400, "invalid_payment_id"},
		{"id not a string", "/payments/approve", "application/json", `{"paymentId":42}`, 400, "bad_request"},
		{"duplicate id", "/payments/approve", "application/json", `{"paymentId":"a","paymentId":"b"}`, 400, "bad_request"},
		{"bad txid", "/payments/complete", "application/json", `{"paymentId":"abc","txid":"zz"}`, 400, "invalid_txid"},
		{"txid with slash", "/payments/complete", "application/json", `{"paymentId":"abc","txid":"../../approve"}`, 400, "invalid_txid"},
		{"not JSON", "/payments/approve", "application/json", `paymentId=abc`, 400, "bad_request"},
		{"other media type", "/payments/approve", "text/plain", `abc`, 415, "unsupported_media_type"},
		{"too large", "/payments/approve", "application/json", `{"paymentId":"abc","pad":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "body_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.send(http.MethodPost, tc.path, tc.contentType, []byte(tc.body))
			assert.Equal(t, tc.status, status, "%v", body)
			assert.Equal(t, tc.code, body["error"], "%v", body)
		})
	}
	status, body := e.send(http.MethodGet, "/payments/complete", "", nil)
	assert.Equal(t, http.StatusMethodNotAllowed, status)
	assert.Equal(t, "method_not_allowed", body["error"])

	for _, ep := range []pitest.Endpoint{pitest.EndpointGet, pitest.EndpointApprove, pitest.EndpointComplete} {
		assert.Zero(t, e.pi.Calls(ep), "no Pi call for bad input (%s)", ep)
	}
	assert.Empty(t, e.up.requests())
}
