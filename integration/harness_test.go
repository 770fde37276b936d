package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/stretchr/testify/require"

	_ "github.com/caddy-pi-guard/caddy-pi-guard"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// Secrets the in-process Caddy reads through {env.*} placeholders.
const (
	testAPIKey     = "it-api-key-0123456789"
	testSigningKey = "integration-test-signing-key-0123456789abcdef"
	caddyBase      = "http://localhost:9080"
)

func TestMain(m *testing.M) {
	os.Setenv("PI_GUARD_IT_API_KEY", testAPIKey)
	os.Setenv("PI_GUARD_IT_SIGNING_KEY", testSigningKey)
	os.Exit(m.Run())
}

// recorded is one request the upstream app received, with what its verifier
// made of the guard's headers.
type recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
	Verified     *verify.Claims // nil unless Pi-Payment-Verified verified
	VerifyErr    error
	Notice       *verify.Claims // nil unless Pi-Payment-Notice verified
}

// upstream is the app behind the guard: it records every request and checks
// the headers the way a real app would, with the verify package.
type upstream struct {
	*httptest.Server
	verifier *verify.Verifier
	mu       sync.Mutex
	reqs     []recorded
	status   int
	failures int // answer the next failures verified requests with 503
	// approveStatus, when set, is the app's answer to approval notices (its
	// price policy saying no).
	approveStatus int
}

func newUpstream(t *testing.T) *upstream {
	key, err := verify.HS256Key("", []byte(testSigningKey))
	require.NoError(t, err)
	v, err := verify.NewVerifier(verify.Options{Keys: []verify.Key{key}})
	require.NoError(t, err)
	u := &upstream{verifier: v, status: http.StatusOK}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	rec := recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()}
	if r.Header.Get(verify.HeaderVerified) != "" {
		rec.Verified, rec.VerifyErr = u.verifier.Verify(r)
	}
	if r.Header.Get(verify.HeaderNotice) != "" {
		rec.Notice, _ = u.verifier.VerifyNotice(r)
	}
	rec.Body, _ = io.ReadAll(r.Body)
	u.mu.Lock()
	status := u.status
	if rec.Notice != nil && rec.Notice.Phase == "approve" && u.approveStatus != 0 {
		status = u.approveStatus
	}
	if rec.Verified != nil && u.failures > 0 {
		u.failures--
		status = http.StatusServiceUnavailable
		rec.Verified = nil // not accepted
	}
	u.reqs = append(u.reqs, rec)
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"upstream":true,"verified":%t}`, rec.Verified != nil)
}

// failNext makes the app answer the next n verified requests with 503.
func (u *upstream) failNext(n int) {
	u.mu.Lock()
	u.failures = n
	u.mu.Unlock()
}

func (u *upstream) requests() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recorded(nil), u.reqs...)
}

// env is one test's world: fake Pi, upstream app, and Caddy in front.
type env struct {
	t       *testing.T
	pi      *pitest.Server
	up      *upstream
	tester  *caddytest.Tester
	storage string // Caddy's storage root, fresh for each test
	extra   []string
}

// setup loads a Caddyfile with pi_guard (plus extra subdirectives) in front of
// a fresh upstream and fake Pi.
func setup(t *testing.T, extra ...string) *env {
	t.Helper()
	pi := pitest.NewServer(pitest.Options{APIKey: testAPIKey, Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	up := newUpstream(t)
	// Not t.TempDir: the guard may still be writing a record in the
	// background when the test ends (its config stays loaded until the next
	// test loads another), and TempDir's cleanup fails on that.
	storage, err := os.MkdirTemp("", "pi-guard-it-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(storage) })
	e := &env{t: t, pi: pi, up: up, tester: caddytest.NewTester(t), storage: storage, extra: extra}
	e.load()
	return e
}

// load (re)loads the Caddy config, as a config reload or restart would.
func (e *env) load() {
	e.tester.InitServer(caddyfile(e.storage, e.pi.URL, e.up.URL, strings.Join(e.extra, "\n\t\t")), "caddyfile")
}

func caddyfile(storage, piURL, upstreamURL, extra string) string {
	if !strings.Contains(extra, "lookup_rate_per_client") {
		// Every test client is 127.0.0.1: the tests that exercise the
		// lookup limits set their own.
		extra += "\n\t\tlookup_rate_per_client 1000"
	}
	if !strings.Contains(extra, "timeout ") {
		extra += "\n\t\ttimeout 2s"
	}
	signing := "signing_key {env.PI_GUARD_IT_SIGNING_KEY}"
	if strings.Contains(extra, "keys {") {
		signing = "" // the test brings its own keys
	}
	return fmt.Sprintf(`{
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	auto_https off
	storage file_system %q
}

http://localhost:9080 {
	pi_guard {
		api_key {env.PI_GUARD_IT_API_KEY}
		api_url %s
		network "Pi Testnet"
		%s
		%s
	}
	reverse_proxy %s
}
`, storage, piURL, signing, extra, strings.TrimPrefix(upstreamURL, "http://"))
}

// payerCookie is the session cookie of the payer's browser: every request
// of these tests carries it unless it sets a Cookie header of its own (""
// for none, as a stranger's script would send).
const payerCookie = "it_session=payer-0123456789abcdef"

// post sends a JSON body to Caddy and returns the status and decoded body.
func (e *env) post(path string, body any, header ...string) (int, map[string]any) {
	e.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		raw, err = json.Marshal(b)
		require.NoError(e.t, err)
	}
	return e.send(http.MethodPost, path, "application/json", raw, header...)
}

func (e *env) send(method, path, contentType string, raw []byte, header ...string) (int, map[string]any) {
	e.t.Helper()
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequest(method, caddyBase+path, bytes.NewReader(raw))
		require.NoError(e.t, err)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		payer := true
		for i := 0; i+1 < len(header); i += 2 {
			if http.CanonicalHeaderKey(header[i]) == "Cookie" {
				payer = false
				if header[i+1] == "" {
					continue
				}
			}
			req.Header.Add(header[i], header[i+1])
		}
		if payer {
			req.Header.Set("Cookie", payerCookie)
		}
		resp, err = e.tester.Client.Do(req)
		if err == nil {
			break
		}
		// A config (re)load hands the listener to the new server: a
		// connection the old one accepted as it stopped is closed with no
		// answer, and Go does not retry a POST. Nothing was answered, so
		// send it again on a new connection (a few times at most).
		if attempt >= 3 || !droppedUnanswered(err) {
			require.NoError(e.t, err)
		}
		e.tester.Client.CloseIdleConnections()
		time.Sleep(20 * time.Millisecond)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	if out == nil {
		out = map[string]any{"raw": string(data)}
	}
	return resp.StatusCode, out
}

// droppedUnanswered reports whether err is a connection closed before any
// answer (EOF or reset).
func droppedUnanswered(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// approver approves a payment at Pi, one way or another.
type approver func(e *env, id string)

// approveThroughGuard approves through Caddy: the guard records the payment.
func approveThroughGuard(e *env, id string) {
	e.t.Helper()
	status, body := e.post("/payments/approve", map[string]string{"paymentId": id})
	require.Equal(e.t, http.StatusOK, status, "approve: %v", body)
}

// approveAtPi approves directly at Pi, as another server of the app might:
// the guard has no record of the payment.
func approveAtPi(e *env, id string) {
	e.t.Helper()
	c, err := piclient.New(piclient.Options{BaseURL: e.pi.URL, APIKey: testAPIKey})
	require.NoError(e.t, err)
	_, err = c.Approve(e.t.Context(), id)
	require.NoError(e.t, err)
}

// approved creates a payment at the fake Pi and approves it through Caddy.
func (e *env) approved(np pitest.NewPayment) piclient.Payment {
	e.t.Helper()
	p := e.pi.CreatePayment(np)
	approveThroughGuard(e, p.Identifier)
	return p
}

// submitted creates and approves a payment (through the guard unless another
// approver is given) and submits its transaction; it returns the payment id
// and txid.
func (e *env) submitted(approve ...approver) (string, string) {
	e.t.Helper()
	p := e.pi.CreatePayment(pitest.NewPayment{Amount: "3.14"})
	if len(approve) > 0 {
		approve[0](e, p.Identifier)
	} else {
		approveThroughGuard(e, p.Identifier)
	}
	txid, err := e.pi.SubmitTransaction(p.Identifier)
	require.NoError(e.t, err)
	return p.Identifier, txid
}

// verifiedDeliveries counts upstream requests that carried a valid verified
// header for payment id.
func (e *env) verifiedDeliveries(id string) int {
	n := 0
	for _, r := range e.up.requests() {
		if r.Verified != nil && r.Verified.Subject == id {
			n++
		}
	}
	return n
}
