package verify

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	for _, k := range []Key{hsKey(t, "hs1", testSecret), edKey(t, "ed1", testEdSeed)} {
		t.Run(k.Algorithm, func(t *testing.T) {
			s := newTestSigner(t, SignerOptions{Keys: []Key{k}})
			tok, err := s.Sign(KindVerified, PhaseComplete, completedPayment(), binding(), "user-uid-TEST")
			require.NoError(t, err)

			v := newTestVerifier(t, Options{Keys: []Key{k.Public()}, PaymentID: testPaymentID})
			c, err := v.Verify(verifiedRequest(tok))
			require.NoError(t, err)

			assert.Equal(t, DefaultIssuer, c.Issuer)
			assert.Equal(t, DefaultAudience, c.Audience)
			assert.Equal(t, testPaymentID, c.Subject)
			assert.Equal(t, testNow.Unix(), c.IssuedAt)
			assert.Equal(t, testNow.Unix()+60, c.Expiry)
			assert.Equal(t, KindVerified, c.Kind)
			assert.Equal(t, PhaseComplete, c.Phase)
			assert.Equal(t, http.MethodPost, c.Method)
			assert.Equal(t, testPath, c.Path)
			assert.Equal(t, BodyDigest([]byte(testBody)), c.BodySHA256)
			assert.Equal(t, "user-uid-TEST", c.UserUID)
			assert.Equal(t, *completedPayment(), c.Payment, "payment must round-trip exactly (amount as decimal text)")
			assert.Equal(t, "3.1415926", c.Payment.Amount.String())

			jti, err := base64.RawURLEncoding.DecodeString(c.ID)
			require.NoError(t, err)
			assert.Len(t, jti, 16)

			// The JOSE header.
			var h map[string]any
			raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(raw, &h))
			assert.Equal(t, map[string]any{"alg": k.Algorithm, "kid": k.ID, "typ": TypeVerified}, h)
		})
	}
}

func TestSignUniqueJTI(t *testing.T) {
	s := newTestSigner(t, SignerOptions{Keys: []Key{hsKey(t, "hs1", testSecret)}})
	v := newTestVerifier(t, Options{Keys: []Key{hsKey(t, "hs1", testSecret)}})
	seen := map[string]bool{}
	for range 100 {
		c, err := v.VerifyToken(signVerified(t, s), KindVerified)
		require.NoError(t, err)
		require.False(t, seen[c.ID], "jti repeated")
		seen[c.ID] = true
	}
}

func TestSignerOptions(t *testing.T) {
	k := hsKey(t, "hs1", testSecret)
	s := newTestSigner(t, SignerOptions{Keys: []Key{k}, Issuer: "my-guard", Audience: "my-app", TTL: 1500 * time.Millisecond})
	c, err := newTestVerifier(t, Options{Keys: []Key{k}, Issuer: "my-guard", Audience: "my-app"}).VerifyToken(signVerified(t, s), KindVerified)
	require.NoError(t, err)
	assert.Equal(t, "my-guard", c.Issuer)
	assert.Equal(t, "my-app", c.Audience)
	assert.Equal(t, int64(2), c.Expiry-c.IssuedAt, "TTL rounds up to whole seconds")
	assert.Equal(t, "hs1", s.KeyID())

	_, err = NewSigner(SignerOptions{})
	assert.Error(t, err)
	_, err = NewSigner(SignerOptions{Keys: []Key{k.Public()}})
	assert.ErrorContains(t, err, "cannot sign")
	_, err = NewSigner(SignerOptions{Keys: []Key{edKey(t, "ed1", testEdSeed).Public()}})
	assert.ErrorContains(t, err, "cannot sign")
	_, err = NewSigner(SignerOptions{Keys: []Key{{ID: "x", Algorithm: AlgHS256}}})
	assert.ErrorContains(t, err, "no secret")
	_, err = NewSigner(SignerOptions{Keys: []Key{k}, TTL: -time.Second})
	assert.Error(t, err)
}

func TestSignRefuses(t *testing.T) {
	s := newTestSigner(t, SignerOptions{Keys: []Key{hsKey(t, "hs1", testSecret)}})

	_, err := s.Sign(KindVerified, PhaseComplete, pendingPayment(), binding(), "")
	assert.ErrorContains(t, err, "not completed", "a verified token for an unfinished payment")
	_, err = s.Sign(KindNotice, PhaseApprove, pendingPayment(), binding(), "")
	assert.NoError(t, err, "a notice for an unfinished payment is fine")

	noTx := completedPayment()
	noTx.Transaction = nil
	_, err = s.Sign(KindVerified, PhaseComplete, noTx, binding(), "")
	assert.Error(t, err)

	_, err = s.Sign("paid", PhaseComplete, completedPayment(), binding(), "")
	assert.ErrorContains(t, err, "kind")
	_, err = s.Sign(KindVerified, "done", completedPayment(), binding(), "")
	assert.ErrorContains(t, err, "phase")
	_, err = s.Sign(KindVerified, PhaseComplete, nil, binding(), "")
	assert.Error(t, err)
	bad := completedPayment()
	bad.Identifier = "../admin"
	_, err = s.Sign(KindVerified, PhaseComplete, bad, binding(), "")
	assert.Error(t, err)
	_, err = s.Sign(KindVerified, PhaseComplete, completedPayment(), Binding{Method: "POST"}, "")
	assert.ErrorContains(t, err, "path")

	huge := completedPayment()
	huge.Metadata = json.RawMessage(`"` + strings.Repeat("x", MaxTokenBytes) + `"`)
	_, err = s.Sign(KindVerified, PhaseComplete, huge, binding(), "")
	assert.ErrorContains(t, err, "MaxTokenBytes")
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestSignRandomFailure(t *testing.T) {
	s := newTestSigner(t, SignerOptions{Keys: []Key{hsKey(t, "hs1", testSecret)}})
	s.rand = failingReader{}
	_, err := s.Sign(KindVerified, PhaseComplete, completedPayment(), binding(), "")
	assert.ErrorContains(t, err, "no entropy")
}

func TestBodyDigest(t *testing.T) {
	// SHA-256("") and SHA-256("abc"), base64url without padding.
	assert.Equal(t, "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU", BodyDigest(nil))
	assert.Equal(t, "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0", BodyDigest([]byte("abc")))
}

// The signer's tokens are byte for byte what go-jose makes of the same
// claims (both algorithms are deterministic), with and without a kid, for
// both kinds, and for payloads of every length modulo 3 (base64 padding).
func TestCompactSignerMatchesGoJose(t *testing.T) {
	for _, k := range []Key{hsKey(t, "hs1", testSecret), hsKey(t, "", testSecret), edKey(t, "ed1", testEdSeed), edKey(t, "", testEdSeed)} {
		for _, typ := range []string{TypeVerified, TypeNotice} {
			ours, err := newCompactSigner(k, typ)
			require.NoError(t, err)
			ref, err := newJoseSigner(k, typ)
			require.NoError(t, err)
			for _, payload := range []string{`{}`, `{"a":1}`, `{"ab":1}`, `{"abc":"\u00e9"}`, strings.Repeat(`{"x":"y"}`, 200)} {
				jws, err := ref.Sign([]byte(payload))
				require.NoError(t, err)
				want, err := jws.CompactSerialize()
				require.NoError(t, err)
				assert.Equal(t, want, ours.sign([]byte(payload)), "%v %s %s", k, typ, payload)
			}
		}
	}
	_, err := newCompactSigner(Key{ID: "x", Algorithm: "RS256"}, TypeVerified)
	assert.Error(t, err)
}

// Signers reuse their scratch buffers from token to token: tokens signed at
// once from many goroutines, of many sizes and with a refused oversized one
// among them, each verify as their own payment, and keep doing so after
// later tokens reused the buffers they were built in.
func TestSignConcurrentTokensStayIntact(t *testing.T) {
	for _, k := range []Key{hsKey(t, "hs1", testSecret), edKey(t, "ed1", testEdSeed)} {
		s := newTestSigner(t, SignerOptions{Keys: []Key{k}})
		v := newTestVerifier(t, Options{Keys: []Key{k.Public()}})
		type signed struct {
			tok, memo string
		}
		results := make(chan signed, 8*50)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 50 {
					p := completedPayment()
					p.Memo = fmt.Sprintf("g%d-i%d %s", g, i, strings.Repeat("<&>", (g*50+i)%300))
					if i == 25 {
						huge := completedPayment()
						huge.Metadata = json.RawMessage(`"` + strings.Repeat("x", 2*MaxTokenBytes) + `"`)
						_, err := s.Sign(KindVerified, PhaseComplete, huge, binding(), "")
						assert.ErrorContains(t, err, "MaxTokenBytes")
					}
					tok, err := s.Sign(KindVerified, PhaseComplete, p, binding(), "")
					if !assert.NoError(t, err) {
						return
					}
					results <- signed{tok, p.Memo}
				}
			})
		}
		wg.Wait()
		close(results)
		n := 0
		for r := range results {
			c, err := v.VerifyToken(r.tok, KindVerified)
			require.NoError(t, err)
			require.Equal(t, r.memo, c.Payment.Memo)
			n++
		}
		assert.Equal(t, 8*50, n)
	}
}
