package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The Caddyfile takes api_url, network and redeliver_to from the
// environment, as the README shows ({env.*} placeholders resolved at
// startup), and a payment goes through.
func TestPlaceholdersInCaddyfile(t *testing.T) {
	e := setup(t)
	t.Setenv("PI_GUARD_IT_API_URL", e.pi.URL)
	t.Setenv("PI_GUARD_IT_NETWORK", "Pi Testnet")
	t.Setenv("PI_GUARD_IT_APP", e.up.URL)
	cfg := caddyfile(e.storage, "{env.PI_GUARD_IT_API_URL}", e.up.URL, "redeliver_to {env.PI_GUARD_IT_APP}")
	cfg = strings.Replace(cfg, `network "Pi Testnet"`, "network {env.PI_GUARD_IT_NETWORK}", 1)
	e.tester.InitServer(cfg, "caddyfile")

	id, txid := e.submitted()
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, "%v", body)
	require.Equal(t, 1, e.verifiedDeliveries(id))
}
