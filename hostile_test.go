package piguard

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// One body, two readings: a field the guard reads may not come in another
// spelling that Go's encoding/json (case-insensitive, last one wins) or a
// framework would read instead, at any level the guard reads.
func TestParseCallbackRefusesOtherSpellings(t *testing.T) {
	for name, body := range map[string]string{
		"upper case after":      `{"paymentId":"A","txid":"ff","PAYMENTID":"B"}`,
		"upper case before":     `{"PaymentId":"B","paymentId":"A"}`,
		"only another case":     `{"paymentid":"B"}`,
		"txid case":             `{"paymentId":"A","txid":"aa","TXID":"bb"}`,
		"escaped duplicate":     `{"paymentId":"A","payment\u0049d":"B"}`,
		"nested case":           `{"payment":{"identifier":"A","IDENTIFIER":"B"}}`,
		"nested twice":          `{"payment":{"identifier":"A","identifier":"B"}}`,
		"nested escaped":        `{"payment":{"identifier":"A","identifie\u0072":"B"}}`,
		"payment other case":    `{"payment":{"identifier":"A"},"Payment":{"identifier":"B"}}`,
		"null id":               `{"paymentId":null,"payment":{"identifier":"A"}}`,
		"identifier not string": `{"payment":{"identifier":7}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseCallback("application/json", []byte(body))
			require.Error(t, err, body)
		})
	}
	_, err := parseCallback("application/x-www-form-urlencoded", []byte("paymentId=A&PAYMENTID=B"))
	assert.ErrorContains(t, err, "another spelling")
	_, err = parseCallback("", []byte(`{"paymentId":"A"}`))
	assert.ErrorIs(t, err, errUnsupportedMedia, "no Content-Type: an app's JSON parser would read nothing")

	cb, err := parseCallback("application/json", []byte(`{"payment":{"identifier":"A","Identifiers":"x","metadata":{"identifier":"B"}}}`))
	require.NoError(t, err, "fields the guard does not read are free, nested objects too")
	assert.Equal(t, "A", cb.PaymentIdentifier)
}

// Reviewer's findings: a charset other than UTF-8 (body-parser decodes
// UTF-7, where "payment+AEk-d" is "paymentId"), bracketed form keys that
// nested parsers read as the field, and a posted transaction other than Pi's.
func TestParseCallbackRefusesWhatAnAppReadsDifferently(t *testing.T) {
	_, err := parseCallback("application/json; charset=utf-7", []byte(`{"paymentId":"A","payment+AEk-d":"B"}`))
	assert.ErrorIs(t, err, errUnsupportedMedia)
	for _, ct := range []string{"application/json; charset=UTF-8", "application/json; charset=utf8", "application/json"} {
		_, err := parseCallback(ct, []byte(`{"paymentId":"A"}`))
		assert.NoError(t, err, ct)
	}
	for _, body := range []string{"paymentId=A&payment[identifier]=B", "paymentId[]=B", "paymentId=A&paymentId.x=B", "payment=B"} {
		_, err := parseCallback("application/x-www-form-urlencoded", []byte(body))
		assert.Error(t, err, body)
	}
	cb, err := parseCallback("application/json", []byte(`{"payment":{"identifier":"A","transaction":{"txid":"AB","_link":"x"}}}`))
	require.NoError(t, err)
	assert.Equal(t, "AB", cb.PostedTxID)
	cb, err = parseCallback("application/json", []byte(`{"payment":{"identifier":"A","transaction":null}}`))
	require.NoError(t, err)
	assert.Empty(t, cb.PostedTxID)
	_, err = parseCallback("application/json", []byte(`{"payment":{"identifier":"A","transaction":{"txid":"a","TXID":"b"}}}`))
	assert.Error(t, err)
}

func TestIncompleteRefusesAPostedTransactionOtherThanPis(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	id, txid := submittedPayment(t, h, pi)
	p := piclient.Payment{Identifier: id}
	other := strings.Repeat("cd", 32)
	next := &nextRecorder{}
	w, body := postJSON(t, h, "/payments/incomplete", `{"payment":{"identifier":"`+p.Identifier+`","transaction":{"txid":"`+other+`"}}}`, next)
	assert.Equal(t, http.StatusConflict, w.Code, "%v", body)
	assert.Equal(t, "txid_mismatch", body["error"])
	assert.False(t, next.called)
	w, body = postJSON(t, h, "/payments/incomplete", `{"payment":{"identifier":"`+p.Identifier+`","transaction":{"txid":"`+strings.ToUpper(txid)+`"}}}`, next)
	assert.Equal(t, http.StatusNoContent, w.Code, "Pi's own transaction, in any case: %v", body)
}

func TestPaymentRoutesRefuseQueriesAndEncodings(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	for _, target := range []string{"/payments/approve?x=1", "/payments/approve?paymentId[]=B", "/payments/approve?", "/payments/approve?a;paymentId=B"} {
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(`{"paymentId":"abc"}`))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		require.NoError(t, h.ServeHTTP(w, r, &nextRecorder{}))
		assert.Equal(t, http.StatusBadRequest, w.Code, target)
	}
	r := httptest.NewRequest(http.MethodPost, "/payments/approve", strings.NewReader(`{"paymentId":"abc"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Content-Encoding", "gzip")
	w := httptest.NewRecorder()
	require.NoError(t, h.ServeHTTP(w, r, &nextRecorder{}))
	assert.Equal(t, http.StatusUnsupportedMediaType, w.Code)
	assert.Zero(t, pi.Calls(pitest.EndpointGet))
}

// Route variants that frameworks route to the same handler are guarded,
// never passed through silently.
func TestRouteVariantsAreGuarded(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	for _, path := range []string{"/payments/complete/", "/PAYMENTS/Complete", "//payments/complete", "/payments/./complete", "/payments/x/../complete//", "/payments/complete;jsessionid=1", "/payments/complete.json"} {
		assert.Equal(t, phaseComplete, h.phaseOf(path), path)
	}
	for _, path := range []string{"/payments/completed", "/payments", "/payments/complete/x"} {
		assert.Empty(t, h.phaseOf(path), path)
	}
	bad := *h
	bad.CancelPath = "/Payments/Complete/"
	assert.ErrorContains(t, bad.Validate(), "use the same path")
}

func TestConnectionAndTrailerTokensNamingGuardHeadersAreRemoved(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	r := httptest.NewRequest(http.MethodGet, "/shop", nil)
	r.Header["Connection"] = []string{"keep-alive, Pi-Payment-Verified", "pi_payment_notice", "PI-PAYMENT-VERIFIED"}
	r.Header["Trailer"] = []string{"Pi-Payment-Verified, X-Sum"}
	next := &nextRecorder{}
	require.NoError(t, h.ServeHTTP(httptest.NewRecorder(), r, next))
	assert.Equal(t, []string{"keep-alive"}, next.req.Header["Connection"])
	assert.Equal(t, []string{"X-Sum"}, next.req.Header["Trailer"])
}

// bodyReader reads the body to its end, as reverse_proxy does, and keeps
// the trailers it saw then.
type bodyReader struct {
	called  bool
	trailer http.Header
}

func (b *bodyReader) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	b.called = true
	_, _ = io.Copy(io.Discard, r.Body)
	b.trailer = r.Trailer.Clone()
	return nil
}

// trailerBody fills r.Trailer when it reaches EOF, as net/http does.
type trailerBody struct {
	io.Reader
	r   *http.Request
	set http.Header
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		for k, v := range b.set {
			b.r.Trailer[k] = v
		}
	}
	return n, err
}
func (b *trailerBody) Close() error { return nil }

func TestTrailersNeverCarryGuardHeaders(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	r := httptest.NewRequest(http.MethodPost, "/upload", nil)
	r.Trailer = http.Header{"Pi-Payment-Verified": nil, "X-Sum": nil} // declared
	r.Body = &trailerBody{Reader: strings.NewReader("data"), r: r, set: http.Header{
		"Pi-Payment-Verified": {"forged"}, "Pi_payment_notice": {"forged"}, "X-Sum": {"1"}}}
	next := &bodyReader{}
	require.NoError(t, h.ServeHTTP(httptest.NewRecorder(), r, next))
	require.True(t, next.called)
	assert.Equal(t, http.Header{"X-Sum": {"1"}}, next.trailer)

	// Payment routes refuse trailers, declared or not.
	for _, declared := range []bool{true, false} {
		r := httptest.NewRequest(http.MethodPost, "/payments/approve", nil)
		r.Header.Set("Content-Type", "application/json")
		r.Trailer = http.Header{}
		if declared {
			r.Trailer["X-Sum"] = nil
		}
		r.Body = &trailerBody{Reader: strings.NewReader(`{"paymentId":"abc"}`), r: r, set: http.Header{"X-Sum": {"1"}}}
		w := httptest.NewRecorder()
		next := &nextRecorder{}
		require.NoError(t, h.ServeHTTP(w, r, next))
		assert.Equal(t, http.StatusBadRequest, w.Code)
		assert.Contains(t, w.Body.String(), "trailers_not_allowed")
		assert.False(t, next.called)
	}
	assert.Zero(t, pi.Calls(pitest.EndpointGet))
}

func postJSON(t *testing.T, h *Handler, path, body string, next ...caddyhttp.Handler) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	withPayer(r)
	w := httptest.NewRecorder()
	var n caddyhttp.Handler = &nextRecorder{}
	if len(next) > 0 {
		n = next[0]
	}
	require.NoError(t, h.ServeHTTP(w, r, n))
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w, out
}

// A txid Pi showed is not the payment's is refused without asking Pi again,
// and so is an id Pi does not know, for a few seconds.
func TestSettledAnswersCostNoPiCall(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	id, txid := submittedPayment(t, h, pi)
	p := piclient.Payment{Identifier: id}
	wrong := strings.Repeat("ab", 32)
	w, body := postJSON(t, h, "/payments/complete", `{"paymentId":"`+p.Identifier+`","txid":"`+wrong+`"}`)
	require.Equal(t, http.StatusConflict, w.Code, "%v", body)
	assert.Equal(t, "txid_mismatch", body["error"])
	pi.ResetCalls()
	for range 20 {
		w, body = postJSON(t, h, "/payments/complete", `{"paymentId":"`+p.Identifier+`","txid":"`+wrong+`"}`)
		require.Equal(t, http.StatusConflict, w.Code)
		assert.Equal(t, "txid_mismatch", body["error"])
	}
	assert.Zero(t, pi.Calls(pitest.EndpointGet)+pi.Calls(pitest.EndpointComplete), "no Pi call for a txid Pi already showed wrong")
	w, body = postJSON(t, h, "/payments/complete", `{"paymentId":"`+p.Identifier+`","txid":"`+strings.ToUpper(txid)+`"}`)
	require.Equal(t, http.StatusNoContent, w.Code, "the right txid still completes, in any letter case: %v", body)

	pi.ResetCalls()
	for range 20 {
		w, body = postJSON(t, h, "/payments/cancelled_payment", `{"paymentId":"nosuchpayment"}`)
		require.Equal(t, http.StatusNotFound, w.Code)
		assert.Equal(t, "payment_not_found", body["error"])
	}
	assert.Equal(t, 1, pi.Calls(pitest.EndpointGet), "an unknown id costs one Pi call, not one per request")
}

// The belt: Pi's /complete answer and every re-read say developer_completed
// with the txid, but not that the transaction is verified. Nothing is
// forwarded as verified.
func TestCompletionNeedsPiVerifiedTransaction(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	liar := httptest.NewServer(unverifying(pi.Handler()))
	defer liar.Close()
	h := newTestHandler(t, liar.URL+"/v2")
	id, txid := submittedPayment(t, h, pi)
	p := piclient.Payment{Identifier: id}
	next := &nextRecorder{}
	w, body := postJSON(t, h, "/payments/complete", `{"paymentId":"`+p.Identifier+`","txid":"`+txid+`"}`, next)
	assert.Equal(t, http.StatusConflict, w.Code, "%v", body)
	assert.Equal(t, "transaction_not_verified", body["error"])
	assert.Equal(t, true, body["retryable"])
	assert.False(t, next.called, "not forwarded")
}

// unverifying answers like Pi, but every PaymentDTO it returns says the
// transaction is not verified.
func unverifying(pi http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		pi.ServeHTTP(rec, r)
		var p map[string]any
		body := rec.Body.Bytes()
		if json.Unmarshal(body, &p) == nil && p["identifier"] != nil {
			if st, ok := p["status"].(map[string]any); ok {
				st["transaction_verified"] = false
			}
			if tx, ok := p["transaction"].(map[string]any); ok {
				tx["verified"] = false
			}
			body, _ = json.Marshal(p)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// A stranger who knows the id of a payment that has no transaction yet
// cannot get it cancelled through the incomplete route while it is fresh.
func TestIncompleteWithoutTransactionIsCancelledOnlyWhenStale(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	p := pi.CreatePayment(pitest.NewPayment{})
	w, body := postJSON(t, h, "/payments/incomplete", `{"payment":{"identifier":"`+p.Identifier+`"}}`)
	assert.Equal(t, http.StatusConflict, w.Code, "%v", body)
	assert.Equal(t, "payment_in_progress", body["error"])
	assert.Equal(t, true, body["retryable"])
	assert.Zero(t, pi.Calls(pitest.EndpointCancel))
	got, _ := pi.Payment(p.Identifier)
	assert.False(t, got.IsCancelled())

	stale := newTestHandler(t, pi.URL)
	stale.CancelIncompleteAfter = caddyDuration(time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	w, body = postJSON(t, stale, "/payments/incomplete", `{"payment":{"identifier":"`+p.Identifier+`"}}`)
	assert.Equal(t, http.StatusNoContent, w.Code, "a stale one is cancelled and the app told: %v", body)
	got, _ = pi.Payment(p.Identifier)
	assert.True(t, got.IsCancelled())
}

func TestCancelRejectedNeedsBindUser(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	h.CancelRejected = true
	assert.ErrorContains(t, h.Validate(), "cancel_rejected needs bind_user")
	h.BindUser = &UserBinding{}
	assert.NoError(t, h.Validate())
}

// A request that waits too long for a payment another request holds gets
// its own retryable answer, well before its timeout.
func TestLockWaitGivesUpEarly(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	h.Timeout = caddyDuration(400 * time.Millisecond)
	p := pi.CreatePayment(pitest.NewPayment{})
	unlock, err := h.locks.Lock(context.Background(), p.Identifier)
	require.NoError(t, err)
	defer unlock()
	start := time.Now()
	w, body := postJSON(t, h, "/payments/approve", `{"paymentId":"`+p.Identifier+`"}`)
	assert.Equal(t, http.StatusConflict, w.Code, "%v", body)
	assert.Equal(t, "payment_busy", body["error"])
	assert.Equal(t, true, body["retryable"])
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Less(t, time.Since(start), 400*time.Millisecond)
}

func TestPiLimitBoundsCallsInFlight(t *testing.T) {
	l := newPiLimit(2)
	l.wait = 20 * time.Millisecond
	r1, err := l.acquire()
	require.NoError(t, err)
	r2, err := l.acquire()
	require.NoError(t, err)
	_, err = l.acquire()
	require.ErrorIs(t, err, errPiBusy)
	ge := piFailure(err, "x")
	assert.Equal(t, http.StatusServiceUnavailable, ge.Status)
	assert.Equal(t, "pi_busy", ge.Code)
	assert.True(t, ge.Retryable)
	r1()
	r3, err := l.acquire()
	require.NoError(t, err)
	r2()
	r3()
	var none *piLimit
	release, err := none.acquire()
	require.NoError(t, err)
	release()
}

// The approve route answers with the guard's JSON when the app cannot be
// asked, not with an empty 502.
func TestApproveWithAppDownAnswersJSON(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	p := pi.CreatePayment(pitest.NewPayment{})
	down := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return io.ErrUnexpectedEOF
	})
	r := httptest.NewRequest(http.MethodPost, "/payments/approve", bytes.NewReader([]byte(`{"paymentId":"`+p.Identifier+`"}`)))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	require.NoError(t, h.ServeHTTP(w, r, down))
	assert.Equal(t, http.StatusBadGateway, w.Code)
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	assert.Contains(t, w.Body.String(), `"upstream_unavailable"`)
	assert.Zero(t, pi.Calls(pitest.EndpointApprove), "Pi is not asked")
}

// A token Pi refused is remembered: repeating it costs no /me call.
func TestInvalidTokenIsRemembered(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	h.BindUser = &UserBinding{}
	require.NoError(t, h.provision(testStorage(t)))
	for range 10 {
		r := httptest.NewRequest(http.MethodPost, "/payments/approve", strings.NewReader(`{"paymentId":"abc"}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer not-a-token")
		w := httptest.NewRecorder()
		require.NoError(t, h.ServeHTTP(w, r, &nextRecorder{}))
		require.Equal(t, http.StatusUnauthorized, w.Code)
	}
	assert.Equal(t, 1, pi.Calls(pitest.EndpointMe))
}

// A CORS preflight on a payment route reaches the app, which answers it; it
// costs no Pi call and carries no guard header.
func TestPreflightOnPaymentRouteReachesTheApp(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	r := httptest.NewRequest(http.MethodOptions, "/payments/complete", nil)
	r.Header.Set("Origin", "https://frontend.example")
	r.Header.Set("Access-Control-Request-Method", "POST")
	r.Header.Set("Pi-Payment-Verified", "forged")
	next := &nextRecorder{}
	require.NoError(t, h.ServeHTTP(httptest.NewRecorder(), r, next))
	require.True(t, next.called)
	assert.Empty(t, next.req.Header.Get("Pi-Payment-Verified"))
	assert.Zero(t, pi.Calls(pitest.EndpointGet))

	r = httptest.NewRequest(http.MethodGet, "/payments/complete", nil)
	w := httptest.NewRecorder()
	next = &nextRecorder{}
	require.NoError(t, h.ServeHTTP(w, r, next))
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code, "other methods are still refused")
	assert.False(t, next.called)
}
