package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// testSecret is for these tests only.
const testSecret = "goapp TEST ONLY secret, never use it 0123456789"

const (
	payID = "pay_goapp_TEST_0001"
	txID  = "aa00000000000000000000000000000000000000000000000000000000000001"
)

type harness struct {
	t      *testing.T
	srv    *httptest.Server
	signer *verify.Signer
}

func newHarness(t *testing.T) *harness {
	// The app is configured as in production: from the environment, with the
	// secret only (the guard names its key itself).
	env := map[string]string{"PI_GUARD_SIGNING_KEY": "  " + testSecret + "\n"}
	_, opts, err := configFromEnv(func(k string) string { return env[k] }, nil)
	require.NoError(t, err)
	v, err := verify.NewVerifier(opts)
	require.NoError(t, err)
	srv := httptest.NewServer(newApp(v))
	t.Cleanup(srv.Close)

	key, err := verify.HS256Key("hs-guard", []byte(testSecret))
	require.NoError(t, err)
	s, err := verify.NewSigner(verify.SignerOptions{Keys: []verify.Key{key}})
	require.NoError(t, err)
	return &harness{t: t, srv: srv, signer: s}
}

func payment(completed bool) *piclient.Payment {
	p := &piclient.Payment{Identifier: payID, Amount: "1.5", Memo: "a coffee",
		Status: piclient.Status{DeveloperApproved: true}}
	if completed {
		p.Status.TransactionVerified, p.Status.DeveloperCompleted = true, true
		p.Transaction = &piclient.Transaction{TxID: txID, Verified: true}
	}
	return p
}

// token signs what the guard would forward to path with body.
func (h *harness) token(kind verify.Kind, phase, path, body string, p *piclient.Payment) string {
	tok, err := h.signer.Sign(kind, phase, p, verify.Binding{Method: http.MethodPost, Path: path, Body: []byte(body)}, "")
	require.NoError(h.t, err)
	return tok
}

// post sends a callback with the given headers (name, value pairs) and
// returns the status and decoded JSON body.
func (h *harness) post(path, body string, headers ...string) (int, map[string]any) {
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(body))
	require.NoError(h.t, err)
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "test-session"})
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(h.t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

func (h *harness) orders() []Order { return h.ordersOf("test-session") }

// ordersOf lists the orders GET /orders shows to a browser session ("" for
// none).
func (h *harness) ordersOf(session string) []Order {
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+"/orders", nil)
	require.NoError(h.t, err)
	if session != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: session})
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	var out struct{ Orders []Order }
	require.NoError(h.t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Orders
}

func (h *harness) order() *Order {
	for _, o := range h.orders() {
		if o.PaymentID == payID {
			return &o
		}
	}
	return nil
}

const (
	approveBody  = `{"paymentId":"` + payID + `"}`
	completeBody = `{"paymentId":"` + payID + `","txid":"` + txID + `"}`
)

// Payment ids are not published: GET /orders shows a browser its own orders
// only.
func TestOrdersAreListedToTheirSessionOnly(t *testing.T) {
	h := newHarness(t)
	notice := h.token(verify.KindNotice, verify.PhaseApprove, "/payments/approve", approveBody, payment(false))
	status, _ := h.post("/payments/approve", approveBody, verify.HeaderNotice, notice)
	require.Equal(t, http.StatusOK, status)
	assert.Len(t, h.orders(), 1)
	assert.Empty(t, h.ordersOf(""), "no session, no orders")
	assert.Empty(t, h.ordersOf("someone-else"))
}

func TestValidVerifiedMarksPaidOnce(t *testing.T) {
	h := newHarness(t)
	notice := h.token(verify.KindNotice, verify.PhaseApprove, "/payments/approve", approveBody, payment(false))
	status, _ := h.post("/payments/approve", approveBody, verify.HeaderNotice, notice)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, StatusPending, h.order().Status, "a notice records a pending order, never a paid one")

	tok := h.token(verify.KindVerified, verify.PhaseComplete, "/payments/complete", completeBody, payment(true))
	status, body := h.post("/payments/complete", completeBody, verify.HeaderVerified, tok)
	require.Equal(t, http.StatusOK, status, body)
	assert.Equal(t, false, body["already_recorded"])
	o := h.order()
	assert.Equal(t, StatusPaid, o.Status)
	assert.Equal(t, txID, o.TxID)
	assert.Equal(t, piclient.Amount("1.5"), o.Amount)

	// Redelivery (same token, or a fresh one for the same payment) is
	// idempotent: still one paid order.
	status, body = h.post("/payments/complete", completeBody, verify.HeaderVerified, tok)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, true, body["already_recorded"])
	tok2 := h.token(verify.KindVerified, verify.PhaseComplete, "/payments/complete", completeBody, payment(true))
	status, _ = h.post("/payments/complete", completeBody, verify.HeaderVerified, tok2)
	assert.Equal(t, http.StatusOK, status)
	require.Len(t, h.orders(), 1)
	assert.Equal(t, StatusPaid, h.order().Status)
	assert.Equal(t, 3, h.order().Deliveries)

	// A late cancellation notice does not undo a payment.
	cancel := h.token(verify.KindNotice, verify.PhaseCancel, "/payments/cancelled_payment", approveBody, payment(false))
	status, _ = h.post("/payments/cancelled_payment", approveBody, verify.HeaderNotice, cancel)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, StatusPaid, h.order().Status)
}

func TestUnverifiedNeverPays(t *testing.T) {
	h := newHarness(t)
	notice := h.token(verify.KindNotice, verify.PhaseApprove, "/payments/approve", approveBody, payment(false))
	h.post("/payments/approve", approveBody, verify.HeaderNotice, notice)

	forgedKey, err := verify.HS256Key("hs-guard", []byte("attacker secret, 32 bytes or more......"))
	require.NoError(t, err)
	forger, err := verify.NewSigner(verify.SignerOptions{Keys: []verify.Key{forgedKey}})
	require.NoError(t, err)
	forged, err := forger.Sign(verify.KindVerified, verify.PhaseComplete, payment(true),
		verify.Binding{Method: http.MethodPost, Path: "/payments/complete", Body: []byte(completeBody)}, "")
	require.NoError(t, err)
	completeNotice := h.token(verify.KindNotice, verify.PhaseComplete, "/payments/complete", completeBody, payment(true))
	otherRoute := h.token(verify.KindVerified, verify.PhaseComplete, "/payments/incomplete", completeBody, payment(true))
	valid := h.token(verify.KindVerified, verify.PhaseComplete, "/payments/complete", completeBody, payment(true))

	for name, headers := range map[string][]string{
		"missing":            nil,
		"forged":             {verify.HeaderVerified, forged},
		"garbage":            {verify.HeaderVerified, "paid"},
		"notice as verified": {verify.HeaderVerified, completeNotice},
		"notice header only": {verify.HeaderNotice, completeNotice},
		"other route":        {verify.HeaderVerified, otherRoute},
		"duplicate":          {verify.HeaderVerified, valid, verify.HeaderVerified, valid},
	} {
		status, body := h.post("/payments/complete", completeBody, headers...)
		assert.Equal(t, http.StatusUnauthorized, status, name)
		assert.Equal(t, "payment_not_verified", body["error"], name)
		assert.Equal(t, StatusPending, h.order().Status, name)
	}

	// The valid token with another body (say, another txid) is refused too.
	status, _ := h.post("/payments/complete", strings.Replace(completeBody, "aa", "bb", 1), verify.HeaderVerified, valid)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, StatusPending, h.order().Status)

	// Notices must be genuine as well.
	status, _ = h.post("/payments/approve", approveBody, verify.HeaderNotice, forged)
	assert.Equal(t, http.StatusUnauthorized, status)
	status, _ = h.post("/payments/cancelled_payment", approveBody)
	assert.Equal(t, http.StatusUnauthorized, status)
}

func TestIncomplete(t *testing.T) {
	h := newHarness(t)
	// Without a transaction: a notice, not paid.
	notice := h.token(verify.KindNotice, verify.PhaseIncomplete, "/payments/incomplete", approveBody, payment(false))
	status, _ := h.post("/payments/incomplete", approveBody, verify.HeaderNotice, notice)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, StatusIncomplete, h.order().Status)

	// A failing verified header is not read as a notice.
	status, _ = h.post("/payments/incomplete", approveBody, verify.HeaderVerified, notice, verify.HeaderNotice, notice)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, StatusIncomplete, h.order().Status)

	// Completed by the guard: verified, paid.
	tok := h.token(verify.KindVerified, verify.PhaseIncomplete, "/payments/incomplete", completeBody, payment(true))
	status, _ = h.post("/payments/incomplete", completeBody, verify.HeaderVerified, tok)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, StatusPaid, h.order().Status)
}

func TestPagesAndRoutes(t *testing.T) {
	h := newHarness(t)
	resp, err := http.Get(h.srv.URL + "/")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(page), "Pay with Pi")

	assert.Empty(t, h.orders())

	resp, err = http.Get(h.srv.URL + "/payments/complete")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	resp, err = http.Get(h.srv.URL + "/nope")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestConfigFromEnv(t *testing.T) {
	pub := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	edPub, err := verify.Ed25519PublicKey("ed1", pub)
	require.NoError(t, err)
	jwks, err := verify.JWKS([]verify.Key{edPub})
	require.NoError(t, err)
	files := map[string][]byte{"/keys.json": jwks}
	readFile := func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return nil, errors.New("no such file")
	}
	run := func(env map[string]string) (string, verify.Options, error) {
		return configFromEnv(func(k string) string { return env[k] }, readFile)
	}

	addr, o, err := run(map[string]string{"PI_GUARD_SIGNING_KEY": testSecret})
	require.NoError(t, err)
	assert.Equal(t, ":8080", addr)
	require.Len(t, o.Keys, 1)
	assert.Equal(t, verify.AlgHS256, o.Keys[0].Algorithm)

	addr, o, err = run(map[string]string{"PORT": "9000", "PI_GUARD_SIGNING_KEY": testSecret, "PI_GUARD_KEY_ID": "k1",
		"PI_GUARD_JWKS_FILE": "/keys.json", "PI_GUARD_AUDIENCE": "shop"})
	require.NoError(t, err)
	assert.Equal(t, ":9000", addr)
	require.Len(t, o.Keys, 2)
	assert.Equal(t, "k1", o.Keys[0].ID)
	assert.Equal(t, "ed1", o.Keys[1].ID)
	assert.Equal(t, "shop", o.Audience)

	addr, _, err = run(map[string]string{"ADDR": "127.0.0.1:8081", "PORT": "1", "PI_GUARD_JWKS_FILE": "/keys.json"})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8081", addr)

	for name, env := range map[string]map[string]string{
		"no key":       {},
		"short secret": {"PI_GUARD_SIGNING_KEY": "short"},
		"no file":      {"PI_GUARD_JWKS_FILE": "/missing.json"},
		"bad jwks":     {"PI_GUARD_JWKS_FILE": "/keys.json", "X": ""},
	} {
		if name == "bad jwks" {
			files["/keys.json"] = []byte(`{"keys":[]}`)
		}
		_, _, err := run(env)
		assert.Error(t, err, name)
	}
}
