package pitest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

var (
	reID      = regexp.MustCompile(`^[A-Za-z0-9]{28}$`)
	reTxID    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	reAddress = regexp.MustCompile(`^G[A-Z2-7]{55}$`)
)

// newFake starts a Server closed at the end of the test.
func newFake(t *testing.T, opts ...pitest.Options) *pitest.Server {
	t.Helper()
	s := pitest.NewServer(opts...)
	t.Cleanup(s.Close)
	return s
}

// newClient returns a piclient for s's app, without retries unless mod says
// otherwise.
func newClient(t *testing.T, s *pitest.Server, mod ...func(*piclient.Options)) *piclient.Client {
	t.Helper()
	o := piclient.Options{BaseURL: s.URL, APIKey: s.APIKey, MaxRetries: -1, Timeout: 5 * time.Second}
	for _, m := range mod {
		m(&o)
	}
	c, err := piclient.New(o)
	require.NoError(t, err)
	return c
}

// approvedPayment creates a user-to-app payment and approves it through the
// API.
func approvedPayment(t *testing.T, s *pitest.Server, c *piclient.Client) piclient.Payment {
	t.Helper()
	p := s.CreatePayment(pitest.NewPayment{})
	_, err := c.Approve(t.Context(), p.Identifier)
	require.NoError(t, err)
	return p
}

// paidPayment creates, approves and pays a payment; it returns the id and
// txid.
func paidPayment(t *testing.T, s *pitest.Server, c *piclient.Client) (string, string) {
	t.Helper()
	p := approvedPayment(t, s, c)
	txid, err := s.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	return p.Identifier, txid
}

// mustPayment reads a payment from the fake's state.
func mustPayment(t *testing.T, s *pitest.Server, id string) piclient.Payment {
	t.Helper()
	p, ok := s.Payment(id)
	require.True(t, ok, "payment %s", id)
	return p
}

type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes Pi's error body.
func (r rawResponse) errorBody(t *testing.T) (code, message string) {
	t.Helper()
	var b struct {
		Error        string `json:"error"`
		ErrorMessage string `json:"error_message"`
	}
	require.NoError(t, json.Unmarshal(r.body, &b), "body %q", r.body)
	return b.Error, b.ErrorMessage
}

// do sends a raw request; auth is the whole Authorization header ("" for
// none).
func do(t *testing.T, method, url, auth, body string) rawResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: data}
}

// keyAuth is the Authorization header of s's app.
func keyAuth(s *pitest.Server) string { return "Key " + s.APIKey }

// otherTxID is a well-formed txid that belongs to no payment.
const otherTxID = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
