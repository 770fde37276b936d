package piguard

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/testkeys"
	"go.uber.org/zap"
)

// writeEd25519 writes a fresh key pair as PEM files and returns their paths.

func TestKeysConfiguration(t *testing.T) {
	newPriv, _ := testkeys.WriteEd25519(t)
	_, oldPub := testkeys.WriteEd25519(t)
	provision := func(h *Handler) error {
		h.APIKey, h.logger = "k", zap.NewNop()
		return h.provision(testStorage(t))
	}

	h := &Handler{Keys: []KeyConfig{{ID: "new", Algorithm: "EdDSA", KeyFile: newPriv}, {ID: "old", Algorithm: "EdDSA", KeyFile: oldPub}}, JWKSPath: DefaultJWKSPath}
	require.NoError(t, provision(h))
	assert.Contains(t, string(h.jwks), `"kid":"new"`)
	assert.Contains(t, string(h.jwks), `"kid":"old"`, "a retired key stays published")
	assert.NotContains(t, string(h.jwks), `"d"`, "no private key material")
	assert.Equal(t, "new", h.signer.KeyID())

	t.Setenv("PI_GUARD_UNIT_HS", unitSigningKey)
	h = &Handler{Keys: []KeyConfig{{ID: "hs-2", Algorithm: "HS256", Secret: "{env.PI_GUARD_UNIT_HS}"}}}
	require.NoError(t, provision(h))
	assert.Equal(t, "hs-2", h.signer.KeyID())

	for name, tc := range map[string]struct {
		h    Handler
		want string
	}{
		"both":               {Handler{SigningKey: unitSigningKey, Keys: []KeyConfig{{ID: "a", Algorithm: "HS256", Secret: unitSigningKey}}}, "alternatives"},
		"public key first":   {Handler{Keys: []KeyConfig{{ID: "old", Algorithm: "EdDSA", KeyFile: oldPub}}}, "needs its private key"},
		"no kid":             {Handler{Keys: []KeyConfig{{Algorithm: "HS256", Secret: unitSigningKey}}}, "needs a kid"},
		"short secret":       {Handler{Keys: []KeyConfig{{ID: "a", Algorithm: "HS256", Secret: "short"}}}, "at least 32"},
		"unknown alg":        {Handler{Keys: []KeyConfig{{ID: "a", Algorithm: "RS256"}}}, "not supported"},
		"missing file":       {Handler{Keys: []KeyConfig{{ID: "a", Algorithm: "EdDSA", KeyFile: "/nonexistent.pem"}}}, "reading the EdDSA key file"},
		"jwks without eddsa": {Handler{SigningKey: unitSigningKey, JWKSPath: DefaultJWKSPath}, "no EdDSA key"},
	} {
		t.Run(name, func(t *testing.T) {
			h := tc.h
			assert.ErrorContains(t, provision(&h), tc.want)
		})
	}
}
