package piguard

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// appRequest is one request the next handler received.
type appRequest struct {
	method, path, rawPath, query string
	host                         string
	header                       http.Header
	body                         []byte
	claims                       *verify.Claims
	verifyErr                    error
}

// capturingApp is a next handler that records every request, verifies the
// verified header against the request as received, and answers status.
type capturingApp struct {
	mu       sync.Mutex
	reqs     []appRequest
	status   int
	header   http.Header // set on every answer
	verifier *verify.Verifier
}

func newCapturingApp(t testing.TB, status int) *capturingApp {
	return &capturingApp{status: status, verifier: unitVerifier(t)}
}

func (a *capturingApp) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	rec := appRequest{method: r.Method, path: r.URL.Path, rawPath: r.URL.EscapedPath(), query: r.URL.RawQuery, host: r.Host, header: r.Header.Clone()}
	if r.Header.Get(verify.HeaderVerified) != "" {
		rec.claims, rec.verifyErr = a.verifier.Verify(r)
	}
	rec.body, _ = io.ReadAll(r.Body)
	a.mu.Lock()
	a.reqs = append(a.reqs, rec)
	status, hdr := a.status, a.header
	a.mu.Unlock()
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte("app's own answer"))
	return nil
}

func (a *capturingApp) requests() []appRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]appRequest(nil), a.reqs...)
}

func (a *capturingApp) set(status int, hdr http.Header) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status, a.header = status, hdr
}

// payerCookie is the session cookie of the payer's browser in these tests:
// every test request carries it unless it sets a Cookie header of its own
// ("" for none, as a stranger's script would send).
const payerCookie = "app_session=payer-0123456789abcdef"

// withPayer adds payerCookie to r unless header sets a Cookie.
func withPayer(r *http.Request, header ...string) {
	for i := 0; i+1 < len(header); i += 2 {
		if http.CanonicalHeaderKey(header[i]) == "Cookie" {
			if header[i+1] != "" {
				r.Header.Add("Cookie", header[i+1])
			}
			continue
		}
		r.Header.Add(header[i], header[i+1])
	}
	if _, set := r.Header["Cookie"]; !set && !hasKey(header, "Cookie") {
		r.Header.Set("Cookie", payerCookie)
	}
}

func hasKey(header []string, key string) bool {
	for i := 0; i+1 < len(header); i += 2 {
		if http.CanonicalHeaderKey(header[i]) == key {
			return true
		}
	}
	return false
}

// post sends a callback to h, from the payer's browser unless header says
// otherwise, and returns the recorder.
func post(h *Handler, next caddyhttp.Handler, target, body string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	withPayer(r, header...)
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, next); err != nil {
		w.Code = -1
		w.Body.WriteString(err.Error())
	}
	return w
}

// submittedPayment creates a payment at the fake Pi, approves it through h
// and submits its transaction.
func submittedPayment(t *testing.T, h *Handler, pi *pitest.Server) (string, string) {
	t.Helper()
	p := pi.CreatePayment(pitest.NewPayment{Amount: "2.5"})
	w := post(h, newCapturingApp(t, http.StatusOK), DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	return p.Identifier, txid
}

func completeBody(id, txid string) string { return `{"paymentId":"` + id + `","txid":"` + txid + `"}` }

// 12.4: when the guard fails after it recorded the app's answer to the
// approval notice, the client gets the guard's JSON and none of the app's
// headers.
func TestApproveErrorCarriesNoAppHeaders(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	app := newCapturingApp(t, http.StatusOK)
	app.set(http.StatusOK, http.Header{"X-App": {"yes"}, "Content-Length": {"16"}, "Server": {"the-app"}})
	p := pi.CreatePayment(pitest.NewPayment{})
	pi.InjectFault(pitest.EndpointApprove, pitest.Fault{Status: http.StatusInternalServerError})

	w := post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	require.Len(t, app.requests(), 1, "the app was asked")
	assert.Equal(t, http.StatusBadGateway, w.Code)
	assert.Empty(t, w.Header().Get("X-App"))
	assert.Empty(t, w.Header().Get("Server"))
	assert.Empty(t, w.Header().Get("Content-Length"))
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var out guardError
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &out), w.Body.String())
	assert.Equal(t, "pi_unavailable", out.Code)

	// And when the app's answer is passed on, its headers come with it.
	pi.ClearFaults()
	w = post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "yes", w.Header().Get("X-App"))
	assert.Equal(t, "app's own answer", w.Body.String())
}

// 14.3: an app that answers a verified delivery with a non-2xx does not
// accept it: the client gets the guard's JSON 502 (retryable) without the
// app's headers, the payment stays owed, and the log says so at warn level
// with a sane wait.
func TestAppRefusalIsAnsweredByTheGuard(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	core, logs := observer.New(zapcore.InfoLevel)
	h.logger = zap.New(core)
	h.redeliverURL, _ = parseRedeliverURL("http://127.0.0.1:1")
	id, txid := submittedPayment(t, h, pi)

	for _, status := range []int{http.StatusInternalServerError, http.StatusForbidden} {
		app := newCapturingApp(t, status)
		app.set(status, http.Header{"X-App": {"yes"}})
		w := post(h, app, DefaultCompletePath, completeBody(id, txid))
		assert.Equal(t, http.StatusBadGateway, w.Code)
		assert.Empty(t, w.Header().Get("X-App"))
		var out guardError
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &out), w.Body.String())
		assert.Equal(t, "upstream_refused", out.Code)
		assert.True(t, out.Retryable)
		assert.Contains(t, out.Message, "complete at Pi")
		assert.NotContains(t, w.Body.String(), "app's own answer")
	}
	rec, err := h.store.Load(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, ledger.Pending, rec.Delivery.State)
	assert.Zero(t, rec.Delivery.Attempts, "client attempts are not background attempts")

	refused := logs.FilterMessageSnippet("did not accept").All()
	require.NotEmpty(t, refused)
	for _, e := range refused {
		assert.Equal(t, zapcore.WarnLevel, e.Level)
		fields := e.ContextMap()
		assert.NotContains(t, fields, "next_attempt")
		wait, ok := fields["retry_in"].(time.Duration)
		require.True(t, ok, "%v", fields)
		assert.True(t, wait >= 0 && wait < time.Hour, "retry_in %v", wait)
	}
	assert.Empty(t, logs.FilterMessage("payment step").FilterField(zap.String("outcome", "completed")).All(),
		"a refused delivery is not logged as completed")
}

// 11.2b: however often a client's delivery fails, it never uses up the
// background redelivery budget.
func TestClientAttemptsNeverExhaust(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	h.RedeliverAttempts = 1
	id, txid := submittedPayment(t, h, pi)
	app := newCapturingApp(t, http.StatusServiceUnavailable)
	for range 4 {
		w := post(h, app, DefaultCompletePath, completeBody(id, txid))
		require.Equal(t, http.StatusBadGateway, w.Code, w.Body.String())
	}
	rec, err := h.store.Load(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, ledger.Pending, rec.Delivery.State)
	assert.Zero(t, rec.Delivery.Attempts)
	assert.False(t, rec.Delivery.NextAttempt.IsZero())

	// A background attempt counts.
	h.applyAttempt(rec, false, "HTTP 503", true)
	assert.Equal(t, ledger.Exhausted, rec.Delivery.State)
	// And a client's failure on an exhausted record changes nothing.
	h.applyAttempt(rec, false, "HTTP 503", false)
	assert.Equal(t, ledger.Exhausted, rec.Delivery.State)
	assert.Equal(t, 1, rec.Delivery.Attempts)
}

// A failed client attempt brings the next background attempt forward,
// never later.
func TestClientAttemptNeverPostponesRedelivery(t *testing.T) {
	h := &Handler{RedeliverBackoff: caddyDuration(time.Second), RedeliverAttempts: 5}
	soon := time.Now().Add(100 * time.Millisecond)
	rec := &ledger.Record{Delivery: ledger.Delivery{State: ledger.Pending, Attempts: 3, NextAttempt: soon}}
	h.applyAttempt(rec, false, "x", false)
	assert.Equal(t, soon, rec.Delivery.NextAttempt)
	late := time.Now().Add(time.Hour)
	rec.Delivery.NextAttempt = late
	h.applyAttempt(rec, false, "x", false)
	assert.True(t, rec.Delivery.NextAttempt.Before(late))
}

// 11.6: a replay, on the complete or the incomplete route, delivers the
// stored original request, never the replaying client's body, cookies,
// query or headers.
func TestReplayDeliversTheStoredRequest(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	id, txid := submittedPayment(t, h, pi)
	app := newCapturingApp(t, http.StatusOK)
	payerBody := `{"paymentId":"` + id + `","txid":"` + txid + `","order":"payer's"}`
	w := post(h, app, DefaultCompletePath, payerBody, "Cookie", payerCookie+"; _ga=GA1.2.1111111111", "User-Agent", "payer-agent")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	stranger := []string{"Cookie", "session=stranger-0123456789abcdef", "Authorization", "Bearer stranger", "X-Credit", "stranger",
		"X-Forwarded-For", "6.6.6.6", "User-Agent", "stranger-agent"}
	strangerBody := `{"paymentId":"` + id + `","txid":"` + txid + `","order":"stranger's"}`
	require.Equal(t, http.StatusOK, post(h, app, DefaultCompletePath, strangerBody, stranger...).Code)
	require.Equal(t, http.StatusOK, post(h, app, DefaultIncompletePath, `{"payment":{"identifier":"`+id+`"}}`, stranger...).Code)
	// (A query string is refused on payment routes before anything else.)
	require.Equal(t, http.StatusBadRequest, post(h, app, DefaultCompletePath+"?credit=stranger", strangerBody, stranger...).Code)
	require.Len(t, app.requests(), 1, "a stranger's replays of a delivered payment never reach the app")

	// The payer comes back: its cookies changed order and its analytics
	// cookie changed; its session cookie did not.
	w = post(h, app, DefaultCompletePath, strangerBody, "Cookie", "_ga=GA1.2.2222222222; "+payerCookie, "X-Credit", "payer")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	reqs := app.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, payerCookie+"; _ga=GA1.2.1111111111", reqs[0].header.Get("Cookie"), "the first delivery is the payer's own request")
	r := reqs[1]
	require.NoError(t, r.verifyErr)
	require.NotNil(t, r.claims)
	assert.Equal(t, id, r.claims.Subject)
	assert.Equal(t, payerBody, string(r.body), "a replay delivers the stored request")
	assert.Equal(t, DefaultCompletePath, r.path)
	assert.Empty(t, r.query)
	assert.Equal(t, "payer-agent", r.header.Get("User-Agent"))
	for _, k := range []string{"Cookie", "Authorization", "X-Credit", "X-Forwarded-For"} {
		assert.Empty(t, r.header.Get(k), k)
	}
	assert.Equal(t, 1, pi.CallsFor(pitest.EndpointComplete, id))
}

// 12.6: what reaches the app as verified is exactly what the token binds:
// the path in its plain encoding, no query string, the body byte for byte.
func TestVerifiedForwardIsTheBoundRequest(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	id, txid := submittedPayment(t, h, pi)
	app := newCapturingApp(t, http.StatusOK)
	body := completeBody(id, txid)
	w := post(h, app, "/payments/%63omplete", body)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	reqs := app.requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.NoError(t, r.verifyErr)
	assert.Equal(t, DefaultCompletePath, r.rawPath, "the path as sent on the wire is htu")
	assert.Empty(t, r.query, "no unbound query string")
	assert.Equal(t, body, string(r.body))
	assert.Equal(t, DefaultCompletePath, r.claims.Path)
}

// 12.6: a verified request whose body reaches the app cut short (the
// guard's process killed mid-forward) fails verification: the token fails
// exactly then, and never vouches for another body.
func TestCutShortBodyFailsVerification(t *testing.T) {
	key, err := verify.HS256Key("", []byte(unitSigningKey))
	require.NoError(t, err)
	signer, err := verify.NewSigner(verify.SignerOptions{Keys: []verify.Key{key}})
	require.NoError(t, err)
	v, err := verify.NewVerifier(verify.Options{Keys: []verify.Key{key}})
	require.NoError(t, err)
	body := []byte(`{"paymentId":"abc","txid":"` + strings.Repeat("ab", 32) + `"}`)
	p := &piclient.Payment{Identifier: "abc", Network: piclient.NetworkTestnet, Status: piclient.Status{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true},
		Transaction: &piclient.Transaction{TxID: strings.Repeat("ab", 32), Verified: true}}
	token, err := signer.Sign(verify.KindVerified, phaseComplete, p, verify.Binding{Method: http.MethodPost, Path: DefaultCompletePath, Body: body}, "")
	require.NoError(t, err)
	for _, cut := range []struct {
		name string
		body io.Reader
	}{
		{"unexpected EOF", io.MultiReader(bytes.NewReader(body[:10]), errReader{io.ErrUnexpectedEOF})},
		{"shorter body", bytes.NewReader(body[:10])},
	} {
		r := httptest.NewRequest(http.MethodPost, DefaultCompletePath, cut.body)
		r.ContentLength = int64(len(body))
		r.Header.Set(verify.HeaderVerified, token)
		_, err := v.Verify(r)
		assert.ErrorIs(t, err, verify.ErrBinding, cut.name)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// 11.6: redelivery sends only the kept headers, even from a record written
// by an older version: never cookies, authorization, X-Forwarded-* or a
// query string.
func TestRedeliverySendsOnlyKeptHeaders(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	got := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
	}))
	defer app.Close()
	h := newTestHandler(t, pi.URL)
	h.redeliverURL, _ = parseRedeliverURL(app.URL)
	h.redeliverClient = http.DefaultClient
	rec := owedRecord(t, h, pi)
	rec.Request.Header = http.Header{"Content-Type": {"application/json"}, "X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Host": {"evil"},
		"Cookie": {"a=b"}, "Authorization": {"Bearer x"}}
	status, err := h.send(t.Context(), rec)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status)
	r, body := <-got, <-bodies
	assert.Equal(t, rec.Request.Path, r.URL.Path)
	assert.Empty(t, r.URL.RawQuery)
	assert.Equal(t, rec.Request.Body, body)
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "Cookie", "Authorization"} {
		assert.Empty(t, r.Header.Get(k), k)
	}
}

func TestRedeliverToHasNoPath(t *testing.T) {
	_, err := parseRedeliverURL("http://127.0.0.1:3000/app")
	assert.ErrorContains(t, err, "must have no path")
	u, err := parseRedeliverURL("http://127.0.0.1:3000/")
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:3000", u.String())
}

// owedRecord completes a payment at the fake Pi (as another instance
// would have) and writes the owed record a completion leaves behind.
func owedRecord(t *testing.T, h *Handler, pi *pitest.Server) *ledger.Record {
	t.Helper()
	p := pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	c, err := piclient.New(piclient.Options{BaseURL: pi.URL, APIKey: pitest.DefaultAPIKey})
	require.NoError(t, err)
	_, err = c.Approve(t.Context(), p.Identifier)
	require.NoError(t, err)
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	done, err := c.Complete(t.Context(), p.Identifier, txid)
	require.NoError(t, err)
	body := []byte(completeBody(p.Identifier, txid))
	rec := &ledger.Record{PaymentID: p.Identifier, Phase: phaseComplete, TxID: txid, Payment: done,
		Request:  &ledger.Request{Method: http.MethodPost, Path: DefaultCompletePath, Header: http.Header{"Content-Type": {"application/json"}}, Body: body},
		Delivery: ledger.Delivery{State: ledger.Pending}}
	require.NoError(t, h.store.Save(t.Context(), rec))
	return rec
}

// 12.5: the owed-deliveries gauge is right as soon as the worker starts,
// not one interval later.
func TestOwedGaugeRightFromTheStart(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	h.RedeliverBackoff = caddyDuration(time.Minute) // a 5 s interval
	owedRecord(t, h, pi)
	owedRecord(t, h, pi)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go h.redeliverLoop(ctx)
	assert.Eventually(t, func() bool { return owedGauge(t, h, ledger.Pending) == 2 },
		time.Second, 10*time.Millisecond)
	assert.Zero(t, owedGauge(t, h, ledger.Exhausted))
}

// 12.2: the worker skips a payment whose lock is busy, runs several
// deliveries at a time, and a hung delivery holds up no other.
func TestWorkerSkipsBusyPaymentsAndRunsInParallel(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	release := make(chan struct{})
	var mu sync.Mutex
	hang, delivered := map[string]bool{}, map[string]int{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var cb struct{ PaymentID string }
		_ = json.NewDecoder(r.Body).Decode(&cb)
		mu.Lock()
		hung := hang[cb.PaymentID]
		mu.Unlock()
		if hung {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		mu.Lock()
		delivered[cb.PaymentID]++
		mu.Unlock()
	}))
	defer app.Close()
	defer close(release)
	h := newTestHandler(t, pi.URL)
	h.Timeout = caddyDuration(10 * time.Second)
	h.RedeliverBackoff = caddyDuration(20 * time.Millisecond)
	h.redeliverURL, _ = parseRedeliverURL(app.URL)
	h.redeliverClient = &http.Client{}

	var hungIDs, others []string
	for range 2 {
		id := owedRecord(t, h, pi).PaymentID
		hang[id] = true
		hungIDs = append(hungIDs, id)
	}
	for range 6 {
		others = append(others, owedRecord(t, h, pi).PaymentID)
	}
	busy := owedRecord(t, h, pi).PaymentID
	unlock, ok := h.locks.TryLock(busy)
	require.True(t, ok)
	_, ok = h.locks.TryLock(busy)
	require.False(t, ok, "TryLock never waits for a held key")

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { h.redeliverLoop(ctx); close(stopped) }()
	// Stop the worker before the storage directory is removed.
	t.Cleanup(func() { cancel(); <-stopped })
	assert.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range others {
			if delivered[id] != 1 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "the others are delivered while two deliveries hang") // generous: the full suite loads the machine
	mu.Lock()
	for _, id := range hungIDs {
		assert.Zero(t, delivered[id], "the hung deliveries are still hanging")
	}
	assert.Zero(t, delivered[busy], "a payment whose lock is held is skipped")
	mu.Unlock()
	unlock()
	assert.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return delivered[busy] == 1
	}, 2*time.Second, 10*time.Millisecond, "and delivered once free")
}

// 12.2: the forward to the app on the request path takes at most timeout.
func TestRequestPathDeliveryIsBounded(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	h.Timeout = caddyDuration(300 * time.Millisecond)
	id, txid := submittedPayment(t, h, pi)
	hung := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		select {
		case <-r.Context().Done():
			return caddyhttp.Error(http.StatusBadGateway, r.Context().Err())
		case <-time.After(3 * time.Second):
			return nil
		}
	})
	start := time.Now()
	w := post(h, hung, DefaultCompletePath, completeBody(id, txid))
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Equal(t, http.StatusBadGateway, w.Code)
	assert.Contains(t, w.Body.String(), "upstream_unavailable")
	rec, err := h.store.Load(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, ledger.Pending, rec.Delivery.State)
}

// owedGauge reads the owed-deliveries gauge for state.
func owedGauge(t testing.TB, h *Handler, state string) float64 {
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(h.metrics.owed))
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == state {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// A replay reaches the app, but its answer (which may be the goods: a
// download link, a licence key) goes only to the payer's own session: ids and
// txids are public, the txid is on the blockchain with the id as its memo.
func TestReplayAnswerGoesToThePayerOnly(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	id, txid := submittedPayment(t, h, pi)
	app := newCapturingApp(t, http.StatusOK)
	body := completeBody(id, txid)
	w := post(h, app, DefaultCompletePath, body)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "app's own answer", w.Body.String())

	for _, stranger := range [][]string{
		{"Cookie", "session=stranger-0123456789abcdef"}, {"Cookie", ""}, {"Cookie", "", "Authorization", "Bearer x"},
		{"Cookie", "app_session=payer-0123456789abcdeX"}, // the payer's cookie name, another value
		{"Cookie", "lang=en"},
	} {
		w = post(h, app, DefaultCompletePath, body, stranger...)
		require.Equal(t, http.StatusOK, w.Code)
		assert.NotContains(t, w.Body.String(), "app's own answer", "%v: the app's answer is withheld", stranger)
		assert.Contains(t, w.Body.String(), `"replayed":true`)
	}
	w = post(h, app, DefaultCompletePath, body, "Cookie", "theme=dark; "+payerCookie+"; _ga=GA1.9")
	assert.Equal(t, "app's own answer", w.Body.String(), "the payer's own retry gets the app's answer, whatever other cookies it has")
	assert.Len(t, app.requests(), 2, "only the payer's replays reach the app")
	assert.Equal(t, 1, pi.CallsFor(pitest.EndpointComplete, id))
}

// Two pi_guard blocks of one config (two apps) share the metrics: each
// app's owed deliveries are its own series, not one gauge the last worker
// pass wins.
func TestOwedGaugePerApp(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	storage := testStorage(t)
	handler := func(key string) *Handler {
		h := &Handler{APIKey: key, SigningKey: benchSigningKey, metrics: m}
		require.NoError(t, h.provision(storage))
		h.logger = zap.NewNop()
		t.Cleanup(func() { _ = h.Cleanup() })
		return h
	}
	a, b := handler("app-one-api-key"), handler("app-two-api-key")
	require.NotEqual(t, a.app, b.app)
	rec := completedRecord(t)
	rec.Delivery.State = ledger.Exhausted
	require.NoError(t, a.store.Save(t.Context(), rec))

	redeliverPass(a)
	redeliverPass(b) // b owes nothing: a's series stays
	got := map[string]float64{}
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "caddy_pi_guard_owed_deliveries" {
			continue
		}
		for _, mm := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mm.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["app"]+"/"+labels["state"]] = mm.GetGauge().GetValue()
		}
	}
	assert.Equal(t, map[string]float64{
		a.app + "/exhausted": 1, a.app + "/pending": 0,
		b.app + "/exhausted": 0, b.app + "/pending": 0,
	}, got)
}

// A password in redeliver_to is never echoed in the configuration error.
func TestRedeliverURLErrorsDoNotEchoPasswords(t *testing.T) {
	for _, bad := range []string{"http://user:s3cret@app:3000", "ftp://user:s3cret@app/", "http://user:s3cret@app:3000/path"} {
		_, err := parseRedeliverURL(bad)
		require.Error(t, err, bad)
		assert.NotContains(t, err.Error(), "s3cret", bad)
	}
}
