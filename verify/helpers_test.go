package verify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// Test-only key material. Never use these anywhere else.
var (
	testSecret      = []byte("caddy-pi-guard TEST ONLY secret 0123456789abcdef")
	otherTestSecret = []byte("caddy-pi-guard OTHER test secret 0123456789abcdef")
	// testEdSeed makes a deterministic Ed25519 key.
	testEdSeed = bytes.Repeat([]byte{0x42}, ed25519.SeedSize)
)

// testNow is the fixed clock of the tests: 2026-01-01T00:00:00Z.
var testNow = time.Unix(1767225600, 0)

const (
	testPaymentID = "pay_TEST_0123456789abcdefABCD"
	testTxID      = "7a1d0c4b2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796"
	testPath      = "/payments/complete"
	testBody      = `{"paymentId":"pay_TEST_0123456789abcdefABCD","txid":"7a1d0c4b2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796"}`
)

func fixedNow() time.Time { return testNow }

// completedPayment is a PaymentDTO as Pi returns it once completed.
func completedPayment() *piclient.Payment {
	return &piclient.Payment{
		Identifier:  testPaymentID,
		UserUID:     "user-uid-TEST",
		Amount:      "3.1415926",
		Memo:        "test order #42",
		Metadata:    json.RawMessage(`{"orderId":42}`),
		FromAddress: "GFROMTESTADDRESS",
		ToAddress:   "GTOTESTADDRESS",
		Direction:   piclient.DirectionUserToApp,
		CreatedAt:   "2026-01-01T00:00:00.000Z",
		Network:     piclient.NetworkTestnet,
		Status: piclient.Status{
			DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true,
		},
		Transaction: &piclient.Transaction{TxID: testTxID, Verified: true, Link: "https://api.testnet.minepi.com/transactions/" + testTxID},
	}
}

// pendingPayment is the same payment before the user submitted it.
func pendingPayment() *piclient.Payment {
	p := completedPayment()
	p.Status = piclient.Status{DeveloperApproved: true}
	p.Transaction = nil
	return p
}

func hsKey(t testing.TB, id string, secret []byte) Key {
	t.Helper()
	k, err := HS256Key(id, secret)
	require.NoError(t, err)
	return k
}

func edKey(t testing.TB, id string, seed []byte) Key {
	t.Helper()
	k, err := Ed25519Key(id, ed25519.NewKeyFromSeed(seed))
	require.NoError(t, err)
	return k
}

func newTestSigner(t testing.TB, o SignerOptions) *Signer {
	t.Helper()
	if o.Now == nil {
		o.Now = fixedNow
	}
	s, err := NewSigner(o)
	require.NoError(t, err)
	return s
}

// countingReader is a deterministic stand-in for crypto/rand, so that tokens
// are reproducible (fuzz workers and golden vectors need that).
type countingReader struct{ n byte }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		c.n++
		p[i] = c.n
	}
	return len(p), nil
}

// newDeterministicSigner is newTestSigner with reproducible jti values.
func newDeterministicSigner(t testing.TB, o SignerOptions) *Signer {
	t.Helper()
	s := newTestSigner(t, o)
	s.rand = &countingReader{}
	return s
}

func newTestVerifier(t testing.TB, o Options) *Verifier {
	t.Helper()
	if o.Now == nil {
		o.Now = fixedNow
	}
	v, err := NewVerifier(o)
	require.NoError(t, err)
	return v
}

func binding() Binding {
	return Binding{Method: http.MethodPost, Path: testPath, Body: []byte(testBody)}
}

func signVerified(t testing.TB, s *Signer) string {
	t.Helper()
	tok, err := s.Sign(KindVerified, PhaseComplete, completedPayment(), binding(), "")
	require.NoError(t, err)
	return tok
}

// request builds the forwarded callback carrying token in header (none when
// token is "").
func request(method, path, body, header, token string) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		r.Header.Set(header, token)
	}
	return r
}

func verifiedRequest(token string) *http.Request {
	return request(http.MethodPost, testPath, testBody, HeaderVerified, token)
}

// validClaims returns claims as the signer would make them at testNow.
func validClaims(kind Kind) Claims {
	return Claims{
		Issuer: DefaultIssuer, Subject: testPaymentID, Audience: DefaultAudience,
		IssuedAt: testNow.Unix(), Expiry: testNow.Unix() + 60, ID: "dGVzdC1qdGktMDAwMDAwMA",
		Kind: kind, Phase: PhaseComplete, Payment: *completedPayment(),
		Method: http.MethodPost, Path: testPath, BodySHA256: BodyDigest([]byte(testBody)),
	}
}

// signRaw signs arbitrary claims with key and header typ, bypassing the
// Signer's checks: it forges what a buggy or compromised signer could emit.
func signRaw(t testing.TB, k Key, typ string, c any) string {
	t.Helper()
	sig, err := newJoseSigner(k, typ)
	require.NoError(t, err)
	payload, err := json.Marshal(c)
	require.NoError(t, err)
	jws, err := sig.Sign(payload)
	require.NoError(t, err)
	tok, err := jws.CompactSerialize()
	require.NoError(t, err)
	return tok
}

// signRawAlg signs with an arbitrary algorithm and key material (for alg
// confusion) and an optional kid.
func signRawAlg(t testing.TB, alg jose.SignatureAlgorithm, key any, kid, typ string, c any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	require.NoError(t, err)
	payload, err := json.Marshal(c)
	require.NoError(t, err)
	jws, err := sig.Sign(payload)
	require.NoError(t, err)
	tok, err := jws.CompactSerialize()
	require.NoError(t, err)
	return tok
}

// unsecuredToken builds an "alg":"none" token by hand.
func unsecuredToken(t testing.TB, header map[string]any, c any) string {
	t.Helper()
	h, err := json.Marshal(header)
	require.NoError(t, err)
	p, err := json.Marshal(c)
	require.NoError(t, err)
	return b64(h) + "." + b64(p) + "."
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// replacePayload swaps a token's payload and keeps its header and signature.
func replacePayload(t testing.TB, tok string, mutate func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	require.NoError(t, d.Decode(&m))
	mutate(m)
	p, err := json.Marshal(m)
	require.NoError(t, err)
	return parts[0] + "." + b64(p) + "." + parts[2]
}

// newJoseSigner is go-jose's signer for k with header typ (and kid): the
// reference the guard's own compact signer is checked against.
func newJoseSigner(k Key, typ string) (jose.Signer, error) {
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	if k.ID != "" {
		opts = opts.WithHeader("kid", k.ID)
	}
	key := any(k.priv)
	if k.Algorithm == AlgHS256 {
		key = k.secret
	}
	return jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Algorithm), Key: key}, opts)
}
