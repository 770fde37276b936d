package piguard

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`pi_guard {
		api_key {env.PI_API_KEY}
		api_url http://127.0.0.1:8090/v2
		network "Pi Testnet"
		approve /api/approve
		complete /api/complete
		signing_key {file./run/secrets/signing}
		header X-Paid
		notice_header X-Notice
		max_body 16KiB
		timeout 5s
		token_ttl 30s
		issuer my-guard
		audience my-app
		respond_approve
		incomplete /api/incomplete
		cancel /api/cancel
		cancel_rejected
		min_amount 1
		max_amount 100.5
		horizon_url https://api.testnet.minepi.com
		wallet GABC
		bind_user cookie pi_token
		redeliver_to http://127.0.0.1:3000
		redeliver_attempts 7
		redeliver_backoff 2s
		cancel_incomplete_after 10m
		max_pi_calls 32
		payer cookie shop_session
		lookup_rate 20
		lookup_rate_per_client 2.5
	}`)
	var h Handler
	require.NoError(t, h.UnmarshalCaddyfile(d))
	assert.Equal(t, Handler{
		APIKey: "{env.PI_API_KEY}", APIURL: "http://127.0.0.1:8090/v2", Network: "Pi Testnet",
		ApprovePath: "/api/approve", CompletePath: "/api/complete",
		SigningKey: "{file./run/secrets/signing}", Header: "X-Paid", NoticeHeader: "X-Notice",
		MaxBody: 16 << 10, Timeout: caddy.Duration(5 * time.Second), TokenTTL: caddy.Duration(30 * time.Second),
		Issuer: "my-guard", Audience: "my-app", RespondApprove: true,
		IncompletePath: "/api/incomplete", CancelPath: "/api/cancel", CancelRejected: true,
		MinAmount: "1", MaxAmount: "100.5", HorizonURL: "https://api.testnet.minepi.com", Wallet: "GABC",
		BindUser:    &UserBinding{From: "cookie", Name: "pi_token"},
		RedeliverTo: "http://127.0.0.1:3000", RedeliverAttempts: 7, RedeliverBackoff: caddy.Duration(2 * time.Second),
		CancelIncompleteAfter: caddy.Duration(10 * time.Minute), MaxPiCalls: 32,
		Payer: &PayerBinding{From: "cookie", Name: "shop_session"}, LookupRate: 20, LookupRatePerClient: 2.5,
	}, h)
}

func TestUnmarshalCaddyfileKeys(t *testing.T) {
	var h Handler
	require.NoError(t, h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`pi_guard {
		keys {
			eddsa ed-2026-11 /etc/pi-guard/ed-2026-11.pem
			hs256 hs-old {env.OLD_SECRET}
		}
		jwks_path /.well-known/pi-guard/jwks.json
	}`)))
	assert.Equal(t, []KeyConfig{
		{ID: "ed-2026-11", Algorithm: "EdDSA", KeyFile: "/etc/pi-guard/ed-2026-11.pem"},
		{ID: "hs-old", Algorithm: "HS256", Secret: "{env.OLD_SECRET}"},
	}, h.Keys)
	assert.Equal(t, "/.well-known/pi-guard/jwks.json", h.JWKSPath)
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	cases := map[string]struct{ input, want string }{
		"unknown":           {"pi_guard {\n bogus 1\n}", `unknown subdirective "bogus"`},
		"unknown, no value": {"pi_guard {\n bogus\n}", `unknown subdirective "bogus"`},
		"unknown lists all": {"pi_guard {\n bogus 1\n}", "payer, cors_origins"},
		"repeated":          {"pi_guard {\n api_key a\n api_key b\n}", `"api_key" given twice`},
		"missing value":     {"pi_guard {\n api_key\n}", "api_key needs exactly one value"},
		"two values":        {"pi_guard {\n network Pi Testnet\n}", "takes exactly one value"},
		"bad size":          {"pi_guard {\n max_body lots\n}", "max_body"},
		"zero size":         {"pi_guard {\n max_body 0\n}", "max_body"},
		"zero pi calls":     {"pi_guard {\n max_pi_calls 0\n}", "max_pi_calls"},
		"bad cancel age":    {"pi_guard {\n cancel_incomplete_after soon\n}", "cancel_incomplete_after"},
		"bad duration":      {"pi_guard {\n timeout soon\n}", "timeout"},
		"negative":          {"pi_guard {\n token_ttl -1s\n}", "token_ttl"},
		"flag with arg":     {"pi_guard {\n respond_approve yes\n}", "respond_approve takes no argument"},
		"inline arguments":  {"pi_guard foo", "wrong argument count"},
		"bad amount":        {"pi_guard {\n min_amount lots\n}", "min_amount"},
		"negative amount":   {"pi_guard {\n max_amount -1\n}", "max_amount"},
		"bad bind_user":     {"pi_guard {\n bind_user header\n}", "bind_user takes"},
		"bare payer":        {"pi_guard {\n payer\n}", "payer takes"},
		"payer no name":     {"pi_guard {\n payer cookie\n}", "payer takes"},
		"zero lookups":      {"pi_guard {\n lookup_rate 0\n}", "lookup_rate"},
		"bad lookups":       {"pi_guard {\n lookup_rate_per_client many\n}", "lookup_rate_per_client"},
		"keys with args":    {"pi_guard {\n keys a\n}", "keys takes a block"},
		"empty keys":        {"pi_guard {\n keys {\n }\n}", "keys block is empty"},
		"bad key type":      {"pi_guard {\n keys {\n rs256 a b\n }\n}", "unknown key type"},
		"key without kid":   {"pi_guard {\n keys {\n hs256 secret\n }\n}", "needs a kid and a secret"},
		"bad attempts":      {"pi_guard {\n redeliver_attempts many\n}", "redeliver_attempts"},
		"unknown storage":   {"pi_guard {\n storage nowhere\n}", "nowhere"},
		"storage twice":     {"pi_guard {\n storage file_system /a\n storage file_system /b\n}", `"storage" given twice`},
		"bad layout":        {"pi_guard {\n record_layout flat\n}", "record_layout \"flat\" must be segments or files"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestCaddyfileAdapt adapts each testdata/caddyfile/*.caddyfile and compares
// the JSON with the golden *.json beside it (go test -run TestCaddyfileAdapt -update).
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile/*.caddyfile")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			input, err := os.ReadFile(file)
			require.NoError(t, err)
			adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
			out, warnings, err := adapter.Adapt(input, map[string]any{"filename": file})
			require.NoError(t, err)
			assert.Empty(t, warnings)
			var pretty any
			require.NoError(t, json.Unmarshal(out, &pretty))
			got, err := json.MarshalIndent(pretty, "", "\t")
			require.NoError(t, err)
			golden := strings.TrimSuffix(file, ".caddyfile") + ".json"
			if *update {
				require.NoError(t, os.WriteFile(golden, append(got, '\n'), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run with -update to create the golden file")
			assert.JSONEq(t, string(want), string(got))
		})
	}
}
