package piguard

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/testkeys"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// cachingVerifier is an app that verifies with the guard's JWK Set the way
// jose's createRemoteJWKSet does: the set is fetched once and kept for
// maxAge (jose: 10 minutes); a token with an unknown kid makes it fetch
// again, but at most once per cooldown (jose: 30 s). Its clock is simulated.
type cachingVerifier struct {
	t                *testing.T
	jwks             func() []byte // what jwks_path serves now
	maxAge, cooldown time.Duration
	now              time.Duration // simulated time since the start
	fetched          time.Duration
	keys             []verify.Key
}

func (c *cachingVerifier) fetch() {
	keys, err := verify.ParseJWKS(c.jwks())
	require.NoError(c.t, err)
	c.keys, c.fetched = keys, c.now
}

func (c *cachingVerifier) verify(token string) error {
	if c.keys == nil || c.now-c.fetched >= c.maxAge {
		c.fetch()
	}
	try := func() error {
		v, err := verify.NewVerifier(verify.Options{Keys: c.keys})
		require.NoError(c.t, err)
		_, err = v.VerifyToken(token, verify.KindVerified)
		return err
	}
	err := try()
	if errors.Is(err, verify.ErrSignature) && c.now-c.fetched >= c.cooldown {
		c.fetch()
		err = try()
	}
	return err
}

// rotationGuard is the guard as configured at one step of a rotation.
type rotationGuard struct{ h *Handler }

func newRotationGuard(t *testing.T, keys ...KeyConfig) rotationGuard {
	h := &Handler{APIKey: "rotation", Keys: keys, JWKSPath: DefaultJWKSPath, logger: zap.NewNop()}
	require.NoError(t, h.provision(testStorage(t)))
	return rotationGuard{h}
}

func (g rotationGuard) jwks(t *testing.T) []byte {
	w := httptest.NewRecorder()
	require.NoError(t, g.h.serveJWKS(w, httptest.NewRequest(http.MethodGet, DefaultJWKSPath, nil)))
	require.Equal(t, "public, max-age=300", w.Header().Get("Cache-Control"))
	return w.Body.Bytes()
}

// token signs a completion and returns it with the kid it was signed with.
func (g rotationGuard) token(t *testing.T) (string, string) {
	p := &piclient.Payment{Identifier: "pay_rotation", Amount: "1", Status: piclient.Status{DeveloperCompleted: true},
		Transaction: &piclient.Transaction{TxID: adminTxID}}
	tok, err := g.h.signer.Sign(verify.KindVerified, phaseComplete, p, verify.Binding{Method: "POST", Path: "/payments/complete"}, "")
	require.NoError(t, err)
	head, err := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0])
	require.NoError(t, err)
	var hdr struct {
		Kid string `json:"kid"`
	}
	require.NoError(t, json.Unmarshal(head, &hdr))
	return tok, hdr.Kid
}

// TestKeyRotationProcedure walks docs/operations.md's rotation with a
// verifier that caches the JWK Set, checking at every step that the tokens the
// guard signs verify: add the new key second (published, not signing), wait
// longer than verifiers cache, promote it, wait token_ttl + leeway, retire
// the old key.
func TestKeyRotationProcedure(t *testing.T) {
	oldPriv, oldPub := testkeys.WriteEd25519(t)
	newPriv, _ := testkeys.WriteEd25519(t)
	oldKey := KeyConfig{ID: "ed-old", Algorithm: "EdDSA", KeyFile: oldPriv}
	newKey := KeyConfig{ID: "ed-new", Algorithm: "EdDSA", KeyFile: newPriv}
	const cacheMaxAge, cooldown = 10 * time.Minute, 30 * time.Second // jose's defaults
	const wait = cacheMaxAge + time.Minute                           // "longer than verifiers cache"

	for _, refetchOnUnknownKid := range []bool{true, false} {
		cd := cooldown
		if !refetchOnUnknownKid {
			cd = 1000 * time.Hour // a verifier that only refreshes on expiry
		}
		guard := newRotationGuard(t, oldKey)
		app := &cachingVerifier{t: t, jwks: func() []byte { return guard.jwks(t) }, maxAge: cacheMaxAge, cooldown: cd}
		check := func(step string, wantKid string) {
			tok, kid := guard.token(t)
			assert.Equal(t, wantKid, kid, "%s: signing key", step)
			assert.NoError(t, app.verify(tok), "%s at %s: a caching verifier must keep verifying", step, app.now)
		}
		check("before", "ed-old")

		// 1. Publish the new key in second place: it does not sign.
		app.now += 9 * time.Minute // the app's cache is 9 minutes old
		guard = newRotationGuard(t, oldKey, newKey)
		assert.Contains(t, string(guard.jwks(t)), `"kid":"ed-new"`, "step 1 publishes the new key")
		check("step 1", "ed-old")
		step1 := app.now
		for app.now < step1+wait {
			app.now += 45 * time.Second
			check("waiting after step 1", "ed-old")
		}

		// 2. Promote it: new tokens carry the new kid; the old key stays published.
		guard = newRotationGuard(t, newKey, oldKey)
		assert.Contains(t, string(guard.jwks(t)), `"kid":"ed-old"`)
		check("step 2", "ed-new")
		step2 := app.now
		for app.now < step2+time.Duration(verify.DefaultTTL+verify.DefaultLeeway) {
			app.now += 15 * time.Second
			check("waiting after step 2", "ed-new")
		}

		// 3. Retire the old key (or keep only its public key, which never signs).
		guard = newRotationGuard(t, newKey, KeyConfig{ID: "ed-old", Algorithm: "EdDSA", KeyFile: oldPub})
		check("step 3, old key public only", "ed-new")
		guard = newRotationGuard(t, newKey)
		assert.NotContains(t, string(guard.jwks(t)), `"kid":"ed-old"`)
		for range 20 {
			app.now += time.Minute
			check("after step 3", "ed-new")
		}
	}
}

// TestKeyRotationWithoutTheWaitBreaks is the control: promoting the new key
// right after publishing it fails verifiers whose cache predates the
// publication, the breakage issue 14 reported.
func TestKeyRotationWithoutTheWaitBreaks(t *testing.T) {
	oldPriv, _ := testkeys.WriteEd25519(t)
	newPriv, _ := testkeys.WriteEd25519(t)
	oldKey := KeyConfig{ID: "ed-old", Algorithm: "EdDSA", KeyFile: oldPriv}
	newKey := KeyConfig{ID: "ed-new", Algorithm: "EdDSA", KeyFile: newPriv}
	guard := newRotationGuard(t, oldKey)
	app := &cachingVerifier{t: t, jwks: func() []byte { return guard.jwks(t) }, maxAge: 10 * time.Minute, cooldown: 30 * time.Second}
	tok, _ := guard.token(t)
	require.NoError(t, app.verify(tok))
	app.now += 10 * time.Second
	guard = newRotationGuard(t, oldKey, newKey)
	app.now += 5 * time.Second
	guard = newRotationGuard(t, newKey, oldKey) // promoted 5 s after publishing
	tok, _ = guard.token(t)
	assert.ErrorIs(t, app.verify(tok), verify.ErrSignature, "within jose's cooldown the unknown kid is not fetched")
}
