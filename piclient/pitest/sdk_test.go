package pitest_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// The fake SDK is served at the root, as a script any origin can load, with
// its wallet's style sheet beside it.
func TestSDKIsServed(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	root := strings.TrimSuffix(s.URL, "/v2")

	r := do(t, "GET", root+"/pi-sdk.js", "", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "text/javascript; charset=utf-8", r.header.Get("Content-Type"))
	assert.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"), "a page on another origin loads it")
	assert.Equal(t, "cross-origin", r.header.Get("Cross-Origin-Resource-Policy"))
	assert.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
	script := string(r.body)
	for _, want := range []string{"window.Pi", "document.currentScript", "init(config)",
		"authenticate(scopes, onIncompletePaymentFound)", "createPayment(paymentData, callbacks)",
		`new URL("control/", BASE)`, `"pi-sdk.css"`} {
		assert.True(t, strings.Contains(script, want), "the script has %s", want)
	}
	// Every URL it uses is relative to its own: nothing from the internet.
	code := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(script, "")
	assert.False(t, regexp.MustCompile("[\"'`]https?://").MatchString(code), "an absolute URL in the script's code")

	r = do(t, "GET", root+"/pi-sdk.css", "", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "text/css; charset=utf-8", r.header.Get("Content-Type"))
	assert.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, string(r.body), ".pi-wallet")

	r = do(t, "HEAD", root+"/pi-sdk.js", "", "")
	assert.Equal(t, http.StatusOK, r.status)
	assert.Empty(t, r.body)
	r = do(t, "POST", root+"/pi-sdk.js", "", "{}")
	assert.Equal(t, http.StatusMethodNotAllowed, r.status)
	assert.Equal(t, "GET, HEAD", r.header.Get("Allow"))
	r = do(t, "GET", root+"/pi-sdk.jsx", "", "")
	assert.Equal(t, http.StatusNotFound, r.status)
}

// GET /control/payments?user_uid= lists one user's payments: what the SDK
// reads to find the user's incomplete payment.
func TestControlListByUser(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	for _, uid := range []string{"alice", "bob", "alice"} {
		r := do(t, "POST", s.ControlURL+"/payments", "", `{"amount": 1, "user_uid": "`+uid+`"}`)
		require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	}
	list := func(query string) []string {
		r := do(t, "GET", s.ControlURL+"/payments"+query, "", "")
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var out struct{ Payments []piclient.Payment }
		require.NoError(t, json.Unmarshal(r.body, &out))
		uids := []string{}
		for _, p := range out.Payments {
			uids = append(uids, p.UserUID)
		}
		return uids
	}
	assert.Equal(t, []string{"alice", "bob", "alice"}, list(""))
	assert.Equal(t, []string{"alice", "alice"}, list("?user_uid=alice"))
	assert.Equal(t, []string{"bob"}, list("?user_uid=bob"))
	assert.Equal(t, []string{}, list("?user_uid=carol"))
}
