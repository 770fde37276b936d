package integration

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/testkeys"

	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// fetchJWKS reads the guard's JWK Set through Caddy, as an app would.
func (e *env) fetchJWKS() []verify.Key {
	e.t.Helper()
	resp, err := e.tester.Client.Get(caddyBase + "/.well-known/pi-guard/jwks.json")
	require.NoError(e.t, err)
	defer resp.Body.Close()
	require.Equal(e.t, http.StatusOK, resp.StatusCode)
	assert.Equal(e.t, "application/jwk-set+json", resp.Header.Get("Content-Type"))
	data, _ := io.ReadAll(resp.Body)
	keys, err := verify.ParseJWKS(data)
	require.NoError(e.t, err)
	return keys
}

// lastVerifiedToken completes a fresh payment and returns the verified token
// the app received.
func (e *env) lastVerifiedToken() string {
	e.t.Helper()
	id, txid := e.submitted()
	status, body := e.post("/payments/complete", map[string]string{"paymentId": id, "txid": txid})
	require.Equal(e.t, http.StatusOK, status, "%v", body)
	reqs := e.up.requests()
	tok := reqs[len(reqs)-1].Header.Get(verify.HeaderVerified)
	require.NotEmpty(e.t, tok)
	return tok
}

// With EdDSA the app verifies with the published public keys and no secret,
// and a rotation keeps tokens signed before it valid.
func TestEdDSAWithJWKSAndRotation(t *testing.T) {
	oldPriv, oldPub := testkeys.WriteEd25519(t)
	newPriv, _ := testkeys.WriteEd25519(t)
	e := setup(t)
	e.extra = []string{"keys {\n\t\t\teddsa ed-old " + oldPriv + "\n\t\t}", "jwks_path /.well-known/pi-guard/jwks.json"}
	e.load()
	keys := e.fetchJWKS()
	require.Len(t, keys, 1)
	v, err := verify.NewVerifier(verify.Options{Keys: keys})
	require.NoError(t, err)
	oldToken := e.lastVerifiedToken()
	claims, err := v.VerifyToken(oldToken, verify.KindVerified)
	require.NoError(t, err, "the app verifies with the JWK Set alone")
	assert.True(t, claims.Payment.Status.DeveloperCompleted)

	// Rotation: the new key signs, the old public key stays published.
	e.extra = []string{"keys {\n\t\t\teddsa ed-new " + newPriv + "\n\t\t\teddsa ed-old " + oldPub + "\n\t\t}", "jwks_path /.well-known/pi-guard/jwks.json"}
	e.load()
	keys = e.fetchJWKS()
	require.Len(t, keys, 2)
	v, err = verify.NewVerifier(verify.Options{Keys: keys})
	require.NoError(t, err)
	_, err = v.VerifyToken(oldToken, verify.KindVerified)
	assert.NoError(t, err, "a token signed before the rotation still verifies")
	newToken := e.lastVerifiedToken()
	_, err = v.VerifyToken(newToken, verify.KindVerified)
	assert.NoError(t, err)

	// The old key retired: its tokens no longer verify.
	onlyNew, err := verify.NewVerifier(verify.Options{Keys: keys[:1]})
	require.NoError(t, err)
	if keys[0].ID != "ed-new" {
		onlyNew, err = verify.NewVerifier(verify.Options{Keys: keys[1:]})
		require.NoError(t, err)
	}
	_, err = onlyNew.VerifyToken(oldToken, verify.KindVerified)
	assert.ErrorIs(t, err, verify.ErrSignature)
	_, err = onlyNew.VerifyToken(newToken, verify.KindVerified)
	assert.NoError(t, err)
}
