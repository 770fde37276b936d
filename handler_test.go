package piguard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

const unitSigningKey = "unit-test-signing-key-0123456789abcdef"

// newTestHandler provisions a Handler against a fake Pi without Caddy.
func newTestHandler(t testing.TB, piURL string) *Handler {
	t.Helper()
	h := &Handler{APIKey: "pitest-api-key", APIURL: piURL, Network: piclient.NetworkTestnet, SigningKey: unitSigningKey}
	h.logger = zap.NewNop()
	require.NoError(t, h.provision(testStorage(t)))
	require.NoError(t, h.Validate())
	// Wait for background writes (a delivery's mark, a watch change) before
	// the storage directory is removed (cleanups run last-registered first).
	t.Cleanup(func() { _ = h.Cleanup() })
	return h
}

// nextRecorder is the next handler: it records the request it was handed.
type nextRecorder struct {
	called bool
	req    *http.Request
}

func (n *nextRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	n.called, n.req = true, r
	w.WriteHeader(http.StatusNoContent)
	return nil
}

var _ caddyhttp.Handler = (*nextRecorder)(nil)

func TestProvisionErrorsSayWhatToDo(t *testing.T) {
	cases := map[string]struct {
		h    Handler
		want string
	}{
		"no api key":        {Handler{SigningKey: unitSigningKey}, "api_key is empty"},
		"unset env api key": {Handler{APIKey: "{env.PI_GUARD_SURELY_UNSET}", SigningKey: unitSigningKey}, "make sure the variable is set"},
		"no signing key":    {Handler{APIKey: "k"}, "signing_key is empty"},
		"short signing key": {Handler{APIKey: "k", SigningKey: "short"}, "at least 32"},
		"bad api url":       {Handler{APIKey: "k", SigningKey: unitSigningKey, APIURL: "ftp://x"}, "absolute http(s) URL"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := tc.h
			h.logger = zap.NewNop()
			err := h.provision(testStorage(t))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestProvisionResolvesPlaceholdersAndNeverEchoesSecrets(t *testing.T) {
	t.Setenv("PI_GUARD_UNIT_KEY", "secret-api-key-value")
	t.Setenv("PI_GUARD_UNIT_SIGNING", unitSigningKey)
	h := &Handler{APIKey: "{env.PI_GUARD_UNIT_KEY}", SigningKey: "{env.PI_GUARD_UNIT_SIGNING}", logger: zap.NewNop()}
	require.NoError(t, h.provision(testStorage(t)))
	assert.NotContains(t, h.pi.String(), "secret-api-key-value")
	assert.Equal(t, "{env.PI_GUARD_UNIT_KEY}", h.APIKey, "the config keeps the placeholder, not the secret")
}

func TestValidate(t *testing.T) {
	base := func() *Handler {
		h := &Handler{APIKey: "k", SigningKey: unitSigningKey, logger: zap.NewNop()}
		require.NoError(t, h.provision(testStorage(t)))
		return h
	}
	h := base()
	h.Network = "Pi Mainnet"
	assert.ErrorContains(t, h.Validate(), `network "Pi Mainnet" is unknown`)
	h = base()
	h.CompletePath = h.ApprovePath
	assert.ErrorContains(t, h.Validate(), "use the same path")
	h = base()
	h.NoticeHeader = strings.ToLower(h.Header)
	assert.ErrorContains(t, h.Validate(), "must differ")
	h = base()
	h.ApprovePath = "payments/approve"
	assert.ErrorContains(t, h.Validate(), "must start with /")
	h = base()
	h.MinAmount, h.MaxAmount = "10", "1"
	assert.ErrorContains(t, h.Validate(), "above max_amount")
	h = base()
	h.HorizonURL = "http://127.0.0.1:1"
	assert.ErrorContains(t, h.Validate(), "horizon_url and wallet go together")
	h = base()
	h.BindUser = &UserBinding{From: "header", Name: "bad name"}
	assert.ErrorContains(t, h.Validate(), "bind_user must be")
	h = base()
	h.CancelPath = h.CompletePath
	assert.ErrorContains(t, h.Validate(), "use the same path")
	h = base()
	h.Header = "Bad Header"
	assert.ErrorContains(t, h.Validate(), "not a valid header name")
}

func TestStripHeadersOnEveryRoute(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	for _, path := range []string{"/", "/payments/approvex", "/payments/completed"} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Pi-Payment-Verified", "forged")
		r.Header["pi-payment-verified"] = []string{"raw lowercase"}
		r.Header["Pi_Payment_Verified"] = []string{"underscores"}
		r.Header.Set("Pi-Payment-Notice", "forged")
		r.Header.Set("X-Other", "kept")
		next := &nextRecorder{}
		require.NoError(t, h.ServeHTTP(httptest.NewRecorder(), r, next))
		require.True(t, next.called, "non-payment routes pass through")
		assert.Len(t, next.req.Header, 1, "%s: only X-Other is left: %v", path, next.req.Header)
		assert.Equal(t, "kept", next.req.Header.Get("X-Other"))
	}
}

// FuzzHeaderStripping: whatever headers a client sends, the next handler never
// sees anything that an app could read as one of the guard's headers.
func FuzzHeaderStripping(f *testing.F) {
	f.Add("Pi-Payment-Verified", "x", "/")
	f.Add("pi_payment_verified", "x", "/payments/complete")
	f.Add("PI-PAYMENT-NOTICE", "x", "/payments/approve")
	f.Add("Pi-Payment-Verifie", "x", "/a")
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(f, pi.URL)
	f.Fuzz(func(t *testing.T, name, value, path string) {
		if h.phaseOf(path) != "" {
			path = "/x" // payment routes are the other tests' subject
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.Path = path // any bytes at all, as a proxy in front might pass them
		r.Header[name] = []string{value}
		r.Header.Add("Pi-Payment-Verified", value)
		next := &nextRecorder{}
		require.NoError(t, h.ServeHTTP(httptest.NewRecorder(), r, next))
		require.True(t, next.called)
		for k := range next.req.Header {
			norm := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
			if norm == "pi-payment-verified" || norm == "pi-payment-notice" {
				t.Fatalf("header %q reached the next handler", k)
			}
		}
		assert.Empty(t, next.req.Header.Get(verify.HeaderVerified))
	})
}
