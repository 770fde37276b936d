package piguard

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/testkeys"
	"go.uber.org/zap"
)

func TestPlaceholdersResolved(t *testing.T) {
	dir := t.TempDir()
	walletFile := filepath.Join(dir, "wallet")
	require.NoError(t, os.WriteFile(walletFile, []byte("GWALLETFROMFILE\n"), 0o600))
	for k, v := range map[string]string{
		"PI_T_API_URL": "http://127.0.0.1:1/v2", "PI_T_NETWORK": "Pi Testnet",
		"PI_T_APPROVE": "/pay/approve", "PI_T_COMPLETE": "/pay/complete", "PI_T_INCOMPLETE": "/pay/incomplete",
		"PI_T_CANCEL": "/pay/cancel", "PI_T_HEADER": "X-Paid", "PI_T_NOTICE": "X-Notice",
		"PI_T_ISS": "guard-t", "PI_T_AUD": "app-t", "PI_T_HORIZON": "http://127.0.0.1:2",
		"PI_T_REDELIVER": "http://127.0.0.1:3000", "PI_T_KEY": unitSigningKey,
	} {
		t.Setenv(k, v)
	}
	h := &Handler{
		APIKey: "k", SigningKey: "{env.PI_T_KEY}", logger: zap.NewNop(),
		APIURL: "{env.PI_T_API_URL}", Network: "{env.PI_T_NETWORK}",
		ApprovePath: "{env.PI_T_APPROVE}", CompletePath: "{env.PI_T_COMPLETE}",
		IncompletePath: "{env.PI_T_INCOMPLETE}", CancelPath: "{env.PI_T_CANCEL}",
		Header: "{env.PI_T_HEADER}", NoticeHeader: "{env.PI_T_NOTICE}",
		Issuer: "{env.PI_T_ISS}", Audience: "{env.PI_T_AUD}",
		HorizonURL: "{env.PI_T_HORIZON}", Wallet: "{file." + walletFile + "}",
		RedeliverTo: "{env.PI_T_REDELIVER}",
	}
	require.NoError(t, h.provision(testStorage(t)))
	require.NoError(t, h.Validate())
	assert.Equal(t, "http://127.0.0.1:1/v2", h.APIURL)
	assert.Equal(t, "Pi Testnet", h.Network)
	assert.Equal(t, []string{"/pay/approve", "/pay/complete", "/pay/incomplete", "/pay/cancel"},
		[]string{h.ApprovePath, h.CompletePath, h.IncompletePath, h.CancelPath})
	assert.Equal(t, []string{"X-Paid", "X-Notice", "guard-t", "app-t"}, []string{h.Header, h.NoticeHeader, h.Issuer, h.Audience})
	assert.Equal(t, "http://127.0.0.1:2", h.HorizonURL)
	assert.Equal(t, "GWALLETFROMFILE", h.Wallet, "a {file.*} value loses its trailing newline")
	require.NotNil(t, h.redeliverURL)
	assert.Equal(t, "127.0.0.1:3000", h.redeliverURL.Host)
	assert.Equal(t, "{env.PI_T_KEY}", h.SigningKey, "secrets are never written back into the config")

	// jwks_path needs an EdDSA key; checked on its own.
	t.Setenv("PI_T_JWKS", "/.well-known/t.json")
	priv, _ := testkeys.WriteEd25519(t)
	h = &Handler{APIKey: "k", logger: zap.NewNop(), JWKSPath: "{env.PI_T_JWKS}", Keys: []KeyConfig{{ID: "e", Algorithm: "EdDSA", KeyFile: priv}}}
	require.NoError(t, h.provision(testStorage(t)))
	assert.Equal(t, "/.well-known/t.json", h.JWKSPath)
}

func TestPlaceholdersUnsetRefused(t *testing.T) {
	for _, name := range []string{"api_url", "network", "approve", "horizon_url", "wallet", "redeliver_to", "jwks_path", "header"} {
		t.Run(name, func(t *testing.T) {
			h := &Handler{APIKey: "k", SigningKey: unitSigningKey, logger: zap.NewNop()}
			unset := "{env.PI_T_SURELY_UNSET_VARIABLE}"
			field := map[string]*string{"api_url": &h.APIURL, "network": &h.Network, "approve": &h.ApprovePath,
				"horizon_url": &h.HorizonURL, "wallet": &h.Wallet, "redeliver_to": &h.RedeliverTo,
				"jwks_path": &h.JWKSPath, "header": &h.Header}[name]
			*field = unset
			err := h.provision(testStorage(t))
			require.Error(t, err, "an unset variable must not mean the default (or off)")
			assert.ErrorContains(t, err, name+" "+unset+" resolved to an empty value")
		})
	}
}

func TestPlaceholdersNeverLogSecrets(t *testing.T) {
	t.Setenv("PI_T_API_KEY", "super-secret-api-key-value")
	h := &Handler{APIKey: "{env.PI_T_API_KEY}", SigningKey: unitSigningKey, logger: zap.NewNop(), Network: "{env.PI_T_SURELY_UNSET_VARIABLE}"}
	err := h.provision(testStorage(t))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "super-secret-api-key-value")
	assert.Equal(t, "{env.PI_T_API_KEY}", h.APIKey)
}
