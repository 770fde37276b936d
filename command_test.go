package piguard

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// adminServer serves the admin routes as Caddy's admin endpoint does and
// returns its address for --address.
func adminServer(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	for _, rt := range (adminAPI{}).Routes() {
		mux.Handle(rt.Pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := rt.Handler.ServeHTTP(w, r); err != nil {
				ae, _ := err.(caddy.APIError)
				writeJSON(w, ae.HTTPStatus, map[string]string{"error": ae.Message})
			}
		}))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Host
}

func TestCommandListsRetriesAndResolves(t *testing.T) {
	f := newAdminFixture(t, true)
	f.owe(t, "pay_cmd_retry", deliveryExhausted, 10)
	f.owe(t, "pay_cmd_resolve", deliveryExhausted, 10)
	addr := adminServer(t)

	var out bytes.Buffer
	require.NoError(t, cmdDeliveries(&out, addr, deliveryExhausted, false))
	assert.Contains(t, out.String(), "PAYMENT ID")
	assert.Contains(t, out.String(), "pay_cmd_retry")
	assert.Contains(t, out.String(), "exhausted")

	out.Reset()
	err := cmdRetry(&out, addr, "pay_cmd_retry")
	require.Error(t, err, "the app still answers 500")
	assert.Contains(t, err.Error(), "did not accept it (the app answered HTTP 500)")

	f.appStatus.Store(http.StatusOK)
	require.NoError(t, cmdRetry(&out, addr, "pay_cmd_retry"))
	assert.Contains(t, out.String(), "payment pay_cmd_retry delivered")

	err = cmdRetry(&out, addr, "pay_cmd_retry")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nothing is owed", "the admin API's message, not its JSON")
	assert.NotContains(t, err.Error(), `{"error"`)

	assert.ErrorContains(t, cmdResolve(&out, addr, "pay_cmd_resolve", " "), "needs --note")
	out.Reset()
	require.NoError(t, cmdResolve(&out, addr, "pay_cmd_resolve", "paid by hand, ticket 7"))
	assert.Contains(t, out.String(), "payment pay_cmd_resolve resolved (was exhausted after 10 attempt(s)): paid by hand, ticket 7")

	out.Reset()
	require.NoError(t, cmdDeliveries(&out, addr, "", false))
	assert.Equal(t, "no owed deliveries\n", out.String())

	assert.ErrorContains(t, cmdRetry(&out, addr, "../etc"), "not a payment id")
}

func TestCommandSaysWhenCaddyIsNotThere(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u, _ := url.Parse(srv.URL)
	srv.Close()
	err := cmdDeliveries(new(bytes.Buffer), u.Host, "", false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "admin API at "+u.Host)
}
