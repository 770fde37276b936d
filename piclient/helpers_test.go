package piclient_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// Fixtures. testKey is distinctive so that tests can assert it never shows up
// in an error or a String().
const (
	testKey   = "pik_LEAKCANARY_7f3e9a1c5b2d4e6f8a0b1c2d3e4f5a6b"
	testToken = "tok_LEAKCANARY_0123456789abcdefghijklmnopqrstuv"
	testID    = "aBcD1234eFgH5678iJkL9012mNoP" // 28 characters, as Pi's are
	testTxID  = "85b42e1702877c851eb7412fe958c8fb447c3207b4798fadab42ea8539046ce1"
)

// testMetadata is deliberately odd-looking JSON (inner spaces, unicode, an
// escaped character, a big number) to check it is kept byte for byte.
const testMetadata = `{ "order" : 42, "items":[ "a", {"b" :null} ], "note":"ünï\u00e9", "big": 12345678901234567890.5 }`

// fullPaymentJSON is a PaymentDTO with every field set.
func fullPaymentJSON(id string) string {
	return `{
  "identifier": "` + id + `",
  "user_uid": "user-0a1b2c3d",
  "amount": 3.14159265358979323846,
  "memo": "Order #42 \"deluxe\"",
  "metadata": ` + testMetadata + `,
  "from_address": "GAUSERADDRESS",
  "to_address": "GAAPPADDRESS",
  "direction": "user_to_app",
  "created_at": "2024-01-02T03:04:05.678Z",
  "network": "Pi Testnet",
  "status": {
    "developer_approved": true,
    "transaction_verified": true,
    "developer_completed": false,
    "cancelled": false,
    "user_cancelled": true
  },
  "transaction": {
    "txid": "` + testTxID + `",
    "verified": true,
    "_link": "https://api.testnet.minepi.com/transactions/` + testTxID + `"
  }
}`
}

// minimalPaymentJSON is a payment with no transaction yet.
func minimalPaymentJSON(id string) string {
	return `{"identifier":"` + id + `","user_uid":"u1","amount":1.5,"memo":"m","metadata":null,` +
		`"from_address":"","to_address":"","direction":"user_to_app","created_at":"2024-01-01T00:00:00Z",` +
		`"network":"Pi Network","status":{"developer_approved":false,"transaction_verified":false,` +
		`"developer_completed":false,"cancelled":false,"user_cancelled":false},"transaction":null}`
}

// seen is one request as the fake server saw it.
type seen struct {
	Method, Path, RawQuery string
	Auth, ContentType      string
	Accept, UserAgent      string
	Body                   []byte
	At                     time.Time
}

// fakePi is an httptest server that records every request and hands it to h.
type fakePi struct {
	srv  *httptest.Server
	hits atomic.Int32
	// quit is closed before the server is shut down, so that handlers that
	// block can give up.
	quit chan struct{}

	mu   sync.Mutex
	reqs []seen
}

func newFakePi(t *testing.T, h http.HandlerFunc) *fakePi {
	t.Helper()
	f := &fakePi{quit: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, seen{
			Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
			Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"),
			Accept: r.Header.Get("Accept"), UserAgent: r.Header.Get("User-Agent"),
			Body: body, At: time.Now(),
		})
		f.mu.Unlock()
		f.hits.Add(1)
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r)
	}))
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() { close(f.quit) }) // runs first
	return f
}

func (f *fakePi) URL() string { return f.srv.URL }

func (f *fakePi) Hits() int { return int(f.hits.Load()) }

func (f *fakePi) Requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

// block waits until the client gives up on the request (or the test ends).
func (f *fakePi) block(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-f.quit:
	}
}

// newClient returns a client for baseURL with fast test settings; opts may
// adjust them.
func newClient(t *testing.T, baseURL string, opts ...func(*piclient.Options)) *piclient.Client {
	t.Helper()
	o := piclient.Options{
		BaseURL:    baseURL,
		APIKey:     testKey,
		Timeout:    5 * time.Second,
		MaxRetries: 3,
		MinBackoff: time.Millisecond,
		MaxBackoff: 5 * time.Millisecond,
	}
	for _, f := range opts {
		f(&o)
	}
	c, err := piclient.New(o)
	require.NoError(t, err)
	return c
}

func withRetries(n int) func(*piclient.Options) {
	return func(o *piclient.Options) { o.MaxRetries = n }
}

func withTimeout(d time.Duration) func(*piclient.Options) {
	return func(o *piclient.Options) { o.Timeout = d }
}

func withHTTPClient(hc *http.Client) func(*piclient.Options) {
	return func(o *piclient.Options) { o.HTTPClient = hc }
}

// writeJSON answers with status and body.
func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// hangUp drops the connection without answering, after the request (headers
// and body) has been read.
func hangUp(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

// writeRaw sends raw bytes as the whole answer and closes the connection.
func writeRaw(w http.ResponseWriter, raw string) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	_, _ = buf.WriteString(raw)
	_ = buf.Flush()
	_ = conn.Close()
}

// refusingTransport fails the first `fail` round trips the way a refused
// dial does, before anything is written, then delegates to next.
type refusingTransport struct {
	fail  int32
	calls atomic.Int32
	next  http.RoundTripper
}

func (rt *refusingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if rt.calls.Add(1) <= rt.fail {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	return rt.next.RoundTrip(r)
}

// countingTransport counts round trips and delegates.
type countingTransport struct {
	calls atomic.Int32
	next  http.RoundTripper
}

func (rt *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.calls.Add(1)
	return rt.next.RoundTrip(r)
}

func freshTransport() *http.Transport {
	return http.DefaultTransport.(*http.Transport).Clone()
}
