package integration

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metric returns the value of one sample on the admin /metrics endpoint, or
// -1 when it is absent.
func metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://localhost:2999/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(line, fmt.Sprintf("%s=%q", labels[i], labels[i+1])) {
				ok = false
			}
		}
		if ok {
			f := regexp.MustCompile(`\s(\S+)$`).FindStringSubmatch(line)
			v, err := strconv.ParseFloat(f[1], 64)
			require.NoError(t, err)
			return v
		}
	}
	return -1
}

func TestMetricsOnAdminEndpoint(t *testing.T) {
	e := setup(t)
	id, txid := e.submitted()
	status, _ := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status)
	status, _ = e.post("/payments/complete", map[string]string{"paymentId": "nope", "txid": "00"})
	require.Equal(t, http.StatusBadRequest, status)

	assert.Equal(t, 1.0, metric(t, "caddy_pi_guard_requests_total", "phase", "approve", "outcome", "approved"))
	assert.Equal(t, 1.0, metric(t, "caddy_pi_guard_requests_total", "phase", "complete", "outcome", "completed"))
	assert.Equal(t, 1.0, metric(t, "caddy_pi_guard_requests_total", "phase", "complete", "outcome", "invalid_txid"))
	assert.Equal(t, 1.0, metric(t, "caddy_pi_guard_verified_forwards_total", "phase", "complete"))
	assert.Equal(t, 1.0, metric(t, "caddy_pi_guard_pi_api_calls_total", "endpoint", "complete", "status", "200"))
	assert.Equal(t, 1.0, metric(t, "caddy_pi_guard_pi_api_call_duration_seconds_count", "endpoint", "complete"))

	// After a reload the new handlers reuse the registered collectors: the
	// counters keep counting (not frozen, not reset, no duplicate panic).
	e.load()
	id, txid = e.submitted()
	status, _ = e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, 2.0, metric(t, "caddy_pi_guard_requests_total", "phase", "complete", "outcome", "completed"))
}

// Several pi_guard blocks in one config share the collectors: no panic, no
// load error, and both count.
func TestMetricsWithSeveralGuards(t *testing.T) {
	e := setup(t)
	cfg := caddyfile(e.storage, e.pi.URL, e.up.URL, "") + fmt.Sprintf(`
http://localhost:9081 {
	pi_guard {
		api_key {env.PI_GUARD_IT_API_KEY}
		api_url %s
		network "Pi Testnet"
		signing_key {env.PI_GUARD_IT_SIGNING_KEY}
	}
	reverse_proxy %s
}
`, e.pi.URL, strings.TrimPrefix(e.up.URL, "http://"))
	e.tester.InitServer(cfg, "caddyfile")
	for _, base := range []string{"http://localhost:9080", "http://localhost:9081"} {
		resp, err := e.tester.Client.Post(base+"/payments/approve", "application/json", strings.NewReader(`{"paymentId":"../x"}`))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	}
	assert.Equal(t, 2.0, metric(t, "caddy_pi_guard_requests_total", "phase", "approve", "outcome", "invalid_payment_id"))
}
