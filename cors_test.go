package piguard

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

const frontendOrigin = "http://localhost:3000"

// corsHandler is a guard that lets frontendOrigin read its own answers.
func corsHandler(t *testing.T) (*Handler, *pitest.Server) {
	t.Helper()
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	h := &Handler{APIKey: "pitest-api-key", APIURL: pi.URL, Network: piclient.NetworkTestnet, SigningKey: unitSigningKey,
		CORSOrigins: []string{"https://shop.example.com", frontendOrigin}}
	return h, pi
}

func provisioned(t *testing.T, h *Handler) *Handler {
	t.Helper()
	h.logger = zap.NewNop()
	require.NoError(t, h.provision(testStorage(t)))
	require.NoError(t, h.Validate())
	t.Cleanup(func() { _ = h.Cleanup() })
	return h
}

// assertCORS checks that an answer of the guard can be read by origin with
// credentials.
func assertCORS(t *testing.T, w *httptest.ResponseRecorder, origin string) {
	t.Helper()
	assert.Equal(t, origin, w.Header().Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "true", w.Header().Get("Access-Control-Allow-Credentials"))
	assert.Equal(t, "Retry-After", w.Header().Get("Access-Control-Expose-Headers"))
	assert.Equal(t, []string{"Origin"}, w.Header().Values("Vary"))
}

// A frontend on a listed origin can read the guard's refusal of a forged
// completion (the browser would otherwise report a bare "Network Error");
// another origin cannot, and without cors_origins nothing changes.
func TestCORSOnGuardErrors(t *testing.T) {
	h, pi := corsHandler(t)
	provisioned(t, h)
	p := pi.CreatePayment(pitest.NewPayment{Amount: "3.14"})
	forged := completeBody(p.Identifier, strings.Repeat("ab", 32)) // a made-up txid: the payment was never paid
	app := newCapturingApp(t, http.StatusOK)

	w := post(h, app, DefaultCompletePath, forged, "Origin", frontendOrigin)
	require.Equal(t, http.StatusConflict, w.Code, w.Body.String())
	assertCORS(t, w, frontendOrigin)
	var body struct {
		Error     string `json:"error"`
		Retryable bool   `json:"retryable"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
	assert.Equal(t, "no_transaction", body.Error)

	w = post(h, app, DefaultCompletePath, forged, "Origin", "https://evil.example.com")
	require.Equal(t, http.StatusConflict, w.Code)
	assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"), "an unlisted origin is not allowed")
	assert.Empty(t, w.Header().Get("Access-Control-Allow-Credentials"))
	assert.Equal(t, []string{"Origin"}, w.Header().Values("Vary"), "the answer depends on the Origin")

	w = post(h, app, DefaultCompletePath, forged)
	assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"), "no Origin, no CORS")

	plain := newTestHandler(t, pi.URL)
	w = post(plain, app, DefaultCompletePath, forged, "Origin", frontendOrigin)
	require.Equal(t, http.StatusConflict, w.Code)
	for _, name := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Vary"} {
		assert.Empty(t, w.Header().Get(name), "without cors_origins: no %s", name)
	}
	assert.Empty(t, app.requests(), "the app never saw the forged completion")
}

// The app's own answers keep the app's CORS headers, and preflights go to
// the app.
func TestCORSLeavesTheAppsAnswers(t *testing.T) {
	h, pi := corsHandler(t)
	provisioned(t, h)
	app := newCapturingApp(t, http.StatusOK)
	app.set(http.StatusOK, http.Header{"Access-Control-Allow-Origin": {"http://the-apps-choice"}})
	p := pi.CreatePayment(pitest.NewPayment{Amount: "1"})

	w := post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`, "Origin", frontendOrigin)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, "app's own answer", w.Body.String())
	assert.Equal(t, "http://the-apps-choice", w.Header().Get("Access-Control-Allow-Origin"))
	assert.Empty(t, w.Header().Get("Access-Control-Allow-Credentials"))

	r := httptest.NewRequest(http.MethodOptions, DefaultCompletePath, nil)
	r.Header.Set("Origin", "https://unlisted.example")
	r.Header.Set("Access-Control-Request-Method", http.MethodPost)
	w = httptest.NewRecorder()
	require.NoError(t, h.ServeHTTP(w, r, app))
	assert.Equal(t, "app's own answer", w.Body.String(), "the app answers an unlisted origin's preflight")
	assert.Equal(t, "http://the-apps-choice", w.Header().Get("Access-Control-Allow-Origin"))
}

// A replay by someone the guard cannot tie to the payer gets the guard's own
// answer, readable by a listed origin.
func TestCORSOnReplayedCompletion(t *testing.T) {
	h, pi := corsHandler(t)
	provisioned(t, h)
	id, txid := submittedPayment(t, h, pi)
	app := newCapturingApp(t, http.StatusOK)
	require.Equal(t, http.StatusOK, post(h, app, DefaultCompletePath, completeBody(id, txid)).Code)

	w := post(h, app, DefaultCompletePath, completeBody(id, txid), "Origin", frontendOrigin, "Cookie", "") // a stranger's replay
	require.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), `"replayed":true`)
	assertCORS(t, w, frontendOrigin)
}

// respond_approve's answer is the guard's own.
func TestCORSOnRespondApprove(t *testing.T) {
	h, pi := corsHandler(t)
	h.RespondApprove = true
	provisioned(t, h)
	p := pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	w := post(h, newCapturingApp(t, http.StatusOK), DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`, "Origin", frontendOrigin)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Contains(t, w.Body.String(), `"approved":true`)
	assertCORS(t, w, frontendOrigin)
}

func TestCORSOriginsValidate(t *testing.T) {
	for origin, want := range map[string]string{
		"*":                          "list each origin by name",
		"null":                       "list each origin by name",
		"localhost:3000":             "is not an origin",
		"ftp://example.com":          "is not an origin",
		"https://example.com/":       "is not an origin",
		"https://example.com/app":    "is not an origin",
		"https://user@example.com":   "is not an origin",
		"https://example.com?x=1":    "is not an origin",
		"https://Example.com":        `use "https://example.com"`,
		"https://example.com:443":    `use "https://example.com"`,
		"http://example.com:80":      `use "http://example.com"`,
		"http://[::1]:3000":          "",
		"https://app.example.com":    "",
		"http://localhost:3000":      "",
		"http://127.0.0.1:8443":      "",
		"https://app.example.com:8e": "is not an origin",
	} {
		h := &Handler{APIKey: "k", SigningKey: unitSigningKey, CORSOrigins: []string{"https://ok.example.com", origin}, logger: zap.NewNop()}
		require.NoError(t, h.provision(testStorage(t)))
		err := h.Validate()
		if want == "" {
			assert.NoError(t, err, origin)
			continue
		}
		if assert.Error(t, err, origin) {
			assert.Contains(t, err.Error(), want, origin)
			assert.Contains(t, err.Error(), "cors_origins", origin)
		}
	}
}

func TestCORSOriginsCaddyfile(t *testing.T) {
	var h Handler
	require.NoError(t, h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("pi_guard {\n cors_origins https://a.example.com http://localhost:3000\n}")))
	assert.Equal(t, []string{"https://a.example.com", "http://localhost:3000"}, h.CORSOrigins)
	out, err := json.Marshal(h)
	require.NoError(t, err)
	assert.JSONEq(t, `{"cors_origins": ["https://a.example.com", "http://localhost:3000"]}`, string(out))

	for input, want := range map[string]string{
		"pi_guard {\n cors_origins\n}": "cors_origins needs at least one origin",
		"pi_guard {\n cors_origins https://a.example.com\n cors_origins https://b.example.com\n}": `"cors_origins" given twice`,
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if assert.Error(t, err, input) {
			assert.Contains(t, err.Error(), want)
		}
	}
}

// A preflight of a payment route from a listed origin is the guard's to
// answer, even while the app is down; from any other origin it is the app's.
func TestCORSPreflightOfPaymentRoutes(t *testing.T) {
	h, _ := corsHandler(t)
	provisioned(t, h)
	preflight := func(path, origin string) (*httptest.ResponseRecorder, *nextRecorder) {
		r := httptest.NewRequest(http.MethodOptions, path, nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", "POST")
		r.Header.Set("Access-Control-Request-Headers", "content-type, access-control-allow-origin")
		w := httptest.NewRecorder()
		next := &nextRecorder{}
		require.NoError(t, h.ServeHTTP(w, r, next))
		return w, next
	}
	w, next := preflight(DefaultCompletePath, frontendOrigin)
	assert.False(t, next.called, "the guard answers it: the app may be down")
	assert.Equal(t, http.StatusNoContent, w.Code)
	assert.Equal(t, frontendOrigin, w.Header().Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "true", w.Header().Get("Access-Control-Allow-Credentials"))
	assert.Contains(t, w.Header().Values("Vary"), "Origin")
	assert.Equal(t, "POST", w.Header().Get("Access-Control-Allow-Methods"))
	assert.Equal(t, "content-type, access-control-allow-origin", w.Header().Get("Access-Control-Allow-Headers"))

	_, next = preflight(DefaultCompletePath, "https://elsewhere.example")
	assert.True(t, next.called, "another origin's preflight is the app's")
	_, next = preflight("/orders", frontendOrigin)
	assert.True(t, next.called, "so is a preflight of another route")
}
