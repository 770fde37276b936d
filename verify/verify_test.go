package verify

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func hsSetup(t *testing.T) (*Signer, *Verifier) {
	k := hsKey(t, "hs1", testSecret)
	return newTestSigner(t, SignerOptions{Keys: []Key{k}}), newTestVerifier(t, Options{Keys: []Key{k}})
}

func TestVerifyTamperedPayload(t *testing.T) {
	s, v := hsSetup(t)
	tok := signVerified(t, s)
	for name, mutate := range map[string]func(map[string]any){
		"amount":  func(m map[string]any) { m["payment"].(map[string]any)["amount"] = json.Number("314.15926") },
		"sub":     func(m map[string]any) { m["sub"] = "pay_OTHER" },
		"exp":     func(m map[string]any) { m["exp"] = json.Number("99999999999") },
		"kind":    func(m map[string]any) { m["kind"] = "verified" },
		"htu":     func(m map[string]any) { m["htu"] = "/payments/other" },
		"uid add": func(m map[string]any) { m["uid"] = "attacker" },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(verifiedRequest(replacePayload(t, tok, mutate)))
			assert.ErrorIs(t, err, ErrSignature)
		})
	}

	// A flipped bit in the signature.
	b := []byte(tok)
	b[len(b)-5] ^= 0x01
	_, err := v.VerifyToken(string(b), KindVerified)
	assert.Error(t, err)
	assert.True(t, errors.Is(err, ErrSignature) || errors.Is(err, ErrMalformed), err)
}

func TestVerifyWrongKey(t *testing.T) {
	_, v := hsSetup(t)
	// Same kid, other secret.
	other := newTestSigner(t, SignerOptions{Keys: []Key{hsKey(t, "hs1", otherTestSecret)}})
	_, err := v.Verify(verifiedRequest(signVerified(t, other)))
	assert.ErrorIs(t, err, ErrSignature)
	assert.ErrorContains(t, err, `key "hs1"`)

	// Unknown kid.
	unknown := newTestSigner(t, SignerOptions{Keys: []Key{hsKey(t, "hs9", testSecret)}})
	_, err = v.Verify(verifiedRequest(signVerified(t, unknown)))
	assert.ErrorIs(t, err, ErrSignature)
	assert.ErrorContains(t, err, "unknown key id")

	// Other Ed25519 key under the same kid.
	ve := newTestVerifier(t, Options{Keys: []Key{edKey(t, "ed1", testEdSeed).Public()}})
	se := newTestSigner(t, SignerOptions{Keys: []Key{edKey(t, "ed1", []byte("another seed of thirty-two bytes"))}})
	_, err = ve.Verify(verifiedRequest(signVerified(t, se)))
	assert.ErrorIs(t, err, ErrSignature)
}

func TestVerifyNoKidTriesKeysOfItsAlgorithm(t *testing.T) {
	c := validClaims(KindVerified)
	tok := signRawAlg(t, jose.HS256, testSecret, "", TypeVerified, c)
	v := newTestVerifier(t, Options{Keys: []Key{
		edKey(t, "ed1", testEdSeed).Public(), hsKey(t, "hs-old", otherTestSecret), hsKey(t, "hs-new", testSecret),
	}})
	_, err := v.VerifyToken(tok, KindVerified)
	assert.NoError(t, err)

	v2 := newTestVerifier(t, Options{Keys: []Key{hsKey(t, "hs-old", otherTestSecret)}})
	_, err = v2.VerifyToken(tok, KindVerified)
	assert.ErrorIs(t, err, ErrSignature)
}

func TestVerifyEmptyKeyID(t *testing.T) {
	c := validClaims(KindVerified)
	secretOnly := newTestVerifier(t, Options{Keys: []Key{hsKey(t, "", testSecret)}})

	// The guard names its key (say by a hash of the secret); an app that
	// knows only the secret still verifies.
	guard := signVerified(t, newTestSigner(t, SignerOptions{Keys: []Key{hsKey(t, "hs-1a2b3c4d", testSecret)}}))
	_, err := secretOnly.Verify(verifiedRequest(guard))
	assert.NoError(t, err)

	// A signer with an empty id writes no kid.
	anon := newTestSigner(t, SignerOptions{Keys: []Key{hsKey(t, "", testSecret)}})
	tok := signVerified(t, anon)
	assert.Empty(t, anon.KeyID())
	hdr, err := base64.RawURLEncoding.DecodeString(tok[:strings.IndexByte(tok, '.')])
	require.NoError(t, err)
	assert.NotContains(t, string(hdr), `"kid"`)
	_, err = newTestVerifier(t, Options{Keys: []Key{hsKey(t, "named", testSecret)}}).VerifyToken(tok, KindVerified)
	assert.NoError(t, err, "no kid: every key of the algorithm is tried")

	// A kid that names a key pins that key, even if an id-less key would
	// verify the signature.
	both := newTestVerifier(t, Options{Keys: []Key{hsKey(t, "a", otherTestSecret), hsKey(t, "", testSecret)}})
	_, err = both.VerifyToken(signRaw(t, hsKey(t, "a", testSecret), TypeVerified, c), KindVerified)
	assert.ErrorIs(t, err, ErrSignature)
	_, err = both.VerifyToken(signRaw(t, hsKey(t, "zzz", testSecret), TypeVerified, c), KindVerified)
	assert.NoError(t, err, "an unknown kid falls to the id-less keys")

	// Several id-less keys (rotation of bare secrets) are all tried.
	two := newTestVerifier(t, Options{Keys: []Key{hsKey(t, "", otherTestSecret), hsKey(t, "", testSecret)}})
	_, err = two.VerifyToken(guard, KindVerified)
	assert.NoError(t, err)

	// An id-less key is still pinned to its algorithm.
	edTok := signVerified(t, newTestSigner(t, SignerOptions{Keys: []Key{edKey(t, "ed1", testEdSeed)}}))
	_, err = secretOnly.VerifyToken(edTok, KindVerified)
	assert.ErrorIs(t, err, ErrSignature)
	mixed := newTestVerifier(t, Options{Keys: []Key{hsKey(t, "", testSecret), edKey(t, "", []byte("another seed of thirty-two bytes")).Public()}})
	_, err = mixed.VerifyToken(edTok, KindVerified)
	assert.ErrorIs(t, err, ErrSignature)
}

func TestVerifyAlgNone(t *testing.T) {
	_, v := hsSetup(t)
	c := validClaims(KindVerified)
	for _, alg := range []string{"none", "None", "NONE", ""} {
		for _, kid := range []string{"hs1", ""} {
			h := map[string]any{"alg": alg, "typ": TypeVerified}
			if kid != "" {
				h["kid"] = kid
			}
			_, err := v.Verify(verifiedRequest(unsecuredToken(t, h, c)))
			assert.ErrorIs(t, err, ErrSignature, "alg %q kid %q", alg, kid)
		}
	}
	// alg none with a (meaningless) signature segment.
	tok := unsecuredToken(t, map[string]any{"alg": "none", "typ": TypeVerified}, c) + "AAAA"
	_, err := v.VerifyToken(tok, KindVerified)
	assert.ErrorIs(t, err, ErrSignature)
}

func TestVerifyAlgConfusion(t *testing.T) {
	ed := edKey(t, "ed1", testEdSeed)
	pub := []byte(ed.Public().pub)
	c := validClaims(KindVerified)
	// An attacker signs HS256 with the published Ed25519 public key as the
	// HMAC secret (padded to 32 bytes, which it already is).
	forged := signRawAlg(t, jose.HS256, pub, "ed1", TypeVerified, c)
	forgedNoKid := signRawAlg(t, jose.HS256, pub, "", TypeVerified, c)

	// EdDSA-only verifier: HS256 is not an accepted algorithm.
	vEd := newTestVerifier(t, Options{Keys: []Key{ed.Public()}})
	for _, tok := range []string{forged, forgedNoKid} {
		_, err := vEd.VerifyToken(tok, KindVerified)
		assert.ErrorIs(t, err, ErrSignature)
	}

	// Verifier with both an HS256 and an EdDSA key: the kid pins EdDSA.
	vBoth := newTestVerifier(t, Options{Keys: []Key{hsKey(t, "hs1", testSecret), ed.Public()}})
	_, err := vBoth.VerifyToken(forged, KindVerified)
	assert.ErrorIs(t, err, ErrSignature)
	assert.ErrorContains(t, err, `key "ed1" is EdDSA`)
	_, err = vBoth.VerifyToken(forgedNoKid, KindVerified)
	assert.ErrorIs(t, err, ErrSignature)

	// The reverse: an EdDSA token claiming the HS256 key's kid.
	edTok := signRawAlg(t, jose.EdDSA, ed25519.NewKeyFromSeed(testEdSeed), "hs1", TypeVerified, c)
	_, err = vBoth.VerifyToken(edTok, KindVerified)
	assert.ErrorIs(t, err, ErrSignature)
	// And an EdDSA token offered to an HS256-only verifier.
	sEd := newTestSigner(t, SignerOptions{Keys: []Key{ed}})
	_, err = newTestVerifier(t, Options{Keys: []Key{hsKey(t, "ed1", testSecret)}}).VerifyToken(signVerified(t, sEd), KindVerified)
	assert.ErrorIs(t, err, ErrSignature)
}

func TestVerifyEmbeddedJWKIgnored(t *testing.T) {
	// A token carrying its own (attacker's) key in the header must not be
	// verified with that key.
	attacker := ed25519.NewKeyFromSeed([]byte("attacker seed of thirty-two byte"))
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: attacker},
		(&jose.SignerOptions{EmbedJWK: true}).WithType(TypeVerified))
	require.NoError(t, err)
	payload, _ := json.Marshal(validClaims(KindVerified))
	jws, err := sig.Sign(payload)
	require.NoError(t, err)
	tok, err := jws.CompactSerialize()
	require.NoError(t, err)
	v := newTestVerifier(t, Options{Keys: []Key{edKey(t, "ed1", testEdSeed).Public()}})
	_, err = v.VerifyToken(tok, KindVerified)
	assert.ErrorIs(t, err, ErrSignature)
}

func TestVerifyTimes(t *testing.T) {
	k := hsKey(t, "hs1", testSecret)
	at := func(d time.Duration) func() time.Time { return func() time.Time { return testNow.Add(d) } }
	s := newTestSigner(t, SignerOptions{Keys: []Key{k}}) // iat testNow, exp +60s
	tok := signVerified(t, s)

	cases := []struct {
		now  time.Duration
		want error
	}{
		{0, nil},
		{59 * time.Second, nil},
		{89 * time.Second, nil},        // past exp, within the 30 s leeway
		{90 * time.Second, ErrExpired}, // exp + leeway
		{time.Hour, ErrExpired},
		{-30 * time.Second, nil}, // verifier's clock 30 s behind: within leeway
		{-31 * time.Second, ErrNotYetValid},
		{-time.Hour, ErrNotYetValid},
	}
	for _, c := range cases {
		v := newTestVerifier(t, Options{Keys: []Key{k}, Now: at(c.now)})
		_, err := v.Verify(verifiedRequest(tok))
		if c.want == nil {
			assert.NoError(t, err, "now %+v", c.now)
		} else {
			assert.ErrorIs(t, err, c.want, "now %+v", c.now)
		}
	}

	// Negative leeway means none.
	v := newTestVerifier(t, Options{Keys: []Key{k}, Leeway: -1, Now: at(60 * time.Second)})
	_, err := v.VerifyToken(tok, KindVerified)
	assert.ErrorIs(t, err, ErrExpired)

	// Absurd times are malformed, not a panic.
	for _, mut := range []func(*Claims){
		func(c *Claims) { c.IssuedAt = 0 },
		func(c *Claims) { c.Expiry = 0 },
		func(c *Claims) { c.Expiry = c.IssuedAt },
		func(c *Claims) { c.Expiry = 1 << 62 },
		func(c *Claims) { c.IssuedAt = -5 },
	} {
		c := validClaims(KindVerified)
		mut(&c)
		_, err := newTestVerifier(t, Options{Keys: []Key{k}}).VerifyToken(signRaw(t, k, TypeVerified, c), KindVerified)
		assert.ErrorIs(t, err, ErrMalformed)
	}
}

func TestVerifyAudienceIssuer(t *testing.T) {
	k := hsKey(t, "hs1", testSecret)
	v := newTestVerifier(t, Options{Keys: []Key{k}})

	other := newTestSigner(t, SignerOptions{Keys: []Key{k}, Audience: "other-app"})
	_, err := v.Verify(verifiedRequest(signVerified(t, other)))
	assert.ErrorIs(t, err, ErrAudience)

	other = newTestSigner(t, SignerOptions{Keys: []Key{k}, Issuer: "someone-else"})
	_, err = v.Verify(verifiedRequest(signVerified(t, other)))
	assert.ErrorIs(t, err, ErrIssuer)

	// Custom values on both sides.
	s := newTestSigner(t, SignerOptions{Keys: []Key{k}, Issuer: "g", Audience: "a"})
	_, err = newTestVerifier(t, Options{Keys: []Key{k}, Issuer: "g", Audience: "a"}).Verify(verifiedRequest(signVerified(t, s)))
	assert.NoError(t, err)
}

func TestVerifyReplayOntoAnotherRequest(t *testing.T) {
	s, v := hsSetup(t)
	tok := signVerified(t, s)
	for name, r := range map[string]*http.Request{
		"other path":      request(http.MethodPost, "/payments/complete2", testBody, HeaderVerified, tok),
		"path with slash": request(http.MethodPost, testPath+"/", testBody, HeaderVerified, tok),
		"other method":    request(http.MethodPut, testPath, testBody, HeaderVerified, tok),
		"other body":      request(http.MethodPost, testPath, strings.Replace(testBody, "pay_TEST", "pay_EVIL", 1), HeaderVerified, tok),
		"empty body":      request(http.MethodPost, testPath, "", HeaderVerified, tok),
		"extra byte":      request(http.MethodPost, testPath, testBody+"\n", HeaderVerified, tok),
	} {
		_, err := v.Verify(r)
		assert.ErrorIs(t, err, ErrBinding, name)
	}
	// The query string is not part of the binding.
	_, err := v.Verify(request(http.MethodPost, testPath+"?x=1", testBody, HeaderVerified, tok))
	assert.NoError(t, err)

	// SkipBody still checks method and path.
	vs := newTestVerifier(t, Options{Keys: []Key{hsKey(t, "hs1", testSecret)}, SkipBody: true})
	_, err = vs.Verify(request(http.MethodPost, testPath, "anything", HeaderVerified, tok))
	assert.NoError(t, err)
	_, err = vs.Verify(request(http.MethodPost, "/elsewhere", testBody, HeaderVerified, tok))
	assert.ErrorIs(t, err, ErrBinding)
}

func TestVerifyRestoresBody(t *testing.T) {
	s, v := hsSetup(t)
	r := verifiedRequest(signVerified(t, s))
	r.ContentLength = -1 // as for a chunked request
	_, err := v.Verify(r)
	require.NoError(t, err)
	assert.Equal(t, int64(len(testBody)), r.ContentLength)
	got, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	assert.Equal(t, testBody, string(got))
	require.NoError(t, r.Body.Close())
	again, err := r.GetBody()
	require.NoError(t, err)
	got, _ = io.ReadAll(again)
	assert.Equal(t, testBody, string(got))
}

func TestVerifyOversizedBody(t *testing.T) {
	k := hsKey(t, "hs1", testSecret)
	big := strings.Repeat("x", 100)
	s := newTestSigner(t, SignerOptions{Keys: []Key{k}})
	tok, err := s.Sign(KindVerified, PhaseComplete, completedPayment(), Binding{Method: "POST", Path: testPath, Body: []byte(big)}, "")
	require.NoError(t, err)
	v := newTestVerifier(t, Options{Keys: []Key{k}, MaxBodyBytes: 99})

	for _, cl := range []int64{100, -1} { // known and unknown length
		r := request(http.MethodPost, testPath, big, HeaderVerified, tok)
		r.ContentLength = cl
		_, err = v.Verify(r)
		assert.ErrorIs(t, err, ErrBodyTooLarge)
		assert.ErrorIs(t, err, ErrBinding)
		rest, _ := io.ReadAll(r.Body)
		assert.Equal(t, big, string(rest), "the body is still whole after a refusal")
	}

	_, err = newTestVerifier(t, Options{Keys: []Key{k}, MaxBodyBytes: 100}).Verify(request(http.MethodPost, testPath, big, HeaderVerified, tok))
	assert.NoError(t, err, "exactly the limit is fine")

	// The default bound.
	huge := strings.Repeat("y", MaxBodyBytes+1)
	r := request(http.MethodPost, testPath, huge, HeaderVerified, tok)
	r.ContentLength = -1
	_, err = newTestVerifier(t, Options{Keys: []Key{k}}).Verify(r)
	assert.ErrorIs(t, err, ErrBodyTooLarge)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestVerifyBodyReadError(t *testing.T) {
	s, v := hsSetup(t)
	r := verifiedRequest(signVerified(t, s))
	r.Body = io.NopCloser(io.MultiReader(strings.NewReader("abc"), errReader{}))
	r.ContentLength = -1
	_, err := v.Verify(r)
	assert.ErrorIs(t, err, ErrBinding)
	assert.ErrorContains(t, err, "connection reset")
}

func TestVerifyRotation(t *testing.T) {
	oldK, newK := hsKey(t, "2025-12", otherTestSecret), hsKey(t, "2026-01", testSecret)
	oldTok := signVerified(t, newTestSigner(t, SignerOptions{Keys: []Key{oldK, newK}}))

	// Step 1-2: verifiers list both; the signer still signs with the old key.
	both := newTestVerifier(t, Options{Keys: []Key{oldK, newK}})
	_, err := both.Verify(verifiedRequest(oldTok))
	assert.NoError(t, err)

	// Step 3: the new key moves first; the signer now uses it.
	s := newTestSigner(t, SignerOptions{Keys: []Key{newK, oldK}})
	assert.Equal(t, "2026-01", s.KeyID())
	newTok := signVerified(t, s)
	_, err = both.Verify(verifiedRequest(newTok))
	assert.NoError(t, err)
	_, err = both.Verify(verifiedRequest(oldTok))
	assert.NoError(t, err, "tokens in flight still verify")

	// Step 4: the old key is removed.
	onlyNew := newTestVerifier(t, Options{Keys: []Key{newK}})
	_, err = onlyNew.Verify(verifiedRequest(oldTok))
	assert.ErrorIs(t, err, ErrSignature)
	_, err = onlyNew.Verify(verifiedRequest(newTok))
	assert.NoError(t, err)

	// Rotation across algorithms (HS256 → EdDSA) works the same way.
	ed := edKey(t, "ed-2026", testEdSeed)
	mixed := newTestVerifier(t, Options{Keys: []Key{newK, ed.Public()}})
	_, err = mixed.Verify(verifiedRequest(signVerified(t, newTestSigner(t, SignerOptions{Keys: []Key{ed, newK}}))))
	assert.NoError(t, err)
	_, err = mixed.Verify(verifiedRequest(newTok))
	assert.NoError(t, err)
}

func TestNoticeVersusVerified(t *testing.T) {
	s, v := hsSetup(t)
	notice, err := s.Sign(KindNotice, PhaseApprove, pendingPayment(), binding(), "")
	require.NoError(t, err)
	verified := signVerified(t, s)
	// Even a notice about a completed payment is not a verified token.
	completedNotice, err := s.Sign(KindNotice, PhaseIncomplete, completedPayment(), binding(), "")
	require.NoError(t, err)

	for _, tok := range []string{notice, completedNotice} {
		_, err = v.Verify(verifiedRequest(tok))
		assert.ErrorIs(t, err, ErrKind)
		c, err := v.VerifyNotice(request(http.MethodPost, testPath, testBody, HeaderNotice, tok))
		require.NoError(t, err)
		assert.Equal(t, KindNotice, c.Kind)
	}

	_, err = v.VerifyNotice(request(http.MethodPost, testPath, testBody, HeaderNotice, verified))
	assert.ErrorIs(t, err, ErrKind)
	// The verified token in the notice header does not count for Verify.
	_, err = v.Verify(request(http.MethodPost, testPath, testBody, HeaderNotice, verified))
	assert.ErrorIs(t, err, ErrMissing)

	// typ and kind must agree: a token whose header and claim disagree (a
	// signer bug) is refused either way.
	k := hsKey(t, "hs1", testSecret)
	mixed := signRaw(t, k, TypeVerified, validClaims(KindNotice))
	_, err = v.VerifyToken(mixed, KindVerified)
	assert.ErrorIs(t, err, ErrKind)
	_, err = v.VerifyToken(mixed, KindNotice)
	assert.ErrorIs(t, err, ErrKind)
	mixed = signRaw(t, k, TypeNotice, validClaims(KindVerified))
	_, err = v.VerifyToken(mixed, KindVerified)
	assert.ErrorIs(t, err, ErrKind)
	_, err = v.VerifyToken(signRaw(t, k, "JWT", validClaims(KindVerified)), KindVerified)
	assert.ErrorIs(t, err, ErrKind)

	_, err = v.VerifyToken(verified, "paid")
	assert.ErrorIs(t, err, ErrKind)
}

func TestVerifyRequiresCompletion(t *testing.T) {
	k := hsKey(t, "hs1", testSecret)
	v := newTestVerifier(t, Options{Keys: []Key{k}})
	for name, mut := range map[string]func(*Claims){
		"not completed":  func(c *Claims) { c.Payment.Status.DeveloperCompleted = false },
		"no transaction": func(c *Claims) { c.Payment.Transaction = nil },
		"empty txid":     func(c *Claims) { c.Payment.Transaction.TxID = "" },
	} {
		c := validClaims(KindVerified)
		mut(&c)
		_, err := v.Verify(verifiedRequest(signRaw(t, k, TypeVerified, c)))
		assert.ErrorIs(t, err, ErrNotCompleted, name)
	}
}

func TestVerifyPaymentID(t *testing.T) {
	k := hsKey(t, "hs1", testSecret)
	s := newTestSigner(t, SignerOptions{Keys: []Key{k}})
	tok := signVerified(t, s)
	_, err := newTestVerifier(t, Options{Keys: []Key{k}, PaymentID: "pay_other"}).Verify(verifiedRequest(tok))
	assert.ErrorIs(t, err, ErrPaymentID)
	_, err = newTestVerifier(t, Options{Keys: []Key{k}, PaymentID: testPaymentID}).Verify(verifiedRequest(tok))
	assert.NoError(t, err)

	c := validClaims(KindVerified)
	c.Subject = "pay_other"
	_, err = newTestVerifier(t, Options{Keys: []Key{k}}).VerifyToken(signRaw(t, k, TypeVerified, c), KindVerified)
	assert.ErrorIs(t, err, ErrPaymentID)

	c = validClaims(KindVerified)
	c.Subject, c.Payment.Identifier = "../../etc", "../../etc"
	_, err = newTestVerifier(t, Options{Keys: []Key{k}}).VerifyToken(signRaw(t, k, TypeVerified, c), KindVerified)
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestVerifyHeaderPresence(t *testing.T) {
	s, v := hsSetup(t)
	tok := signVerified(t, s)

	_, err := v.Verify(verifiedRequest(""))
	assert.ErrorIs(t, err, ErrMissing)

	r := verifiedRequest(tok)
	r.Header.Add(HeaderVerified, tok)
	_, err = v.Verify(r)
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorContains(t, err, "2 times")

	r = verifiedRequest(tok)
	r.Header.Set(HeaderVerified, tok+", "+tok) // as a proxy folding duplicates would
	_, err = v.Verify(r)
	assert.ErrorIs(t, err, ErrMalformed)

	r = verifiedRequest("")
	r.Header["Pi-Payment-Verified"] = []string{""}
	_, err = v.Verify(r)
	assert.ErrorIs(t, err, ErrMalformed)

	// Header names are case-insensitive on the wire.
	r = verifiedRequest("")
	r.Header.Set("pi-payment-verified", tok)
	_, err = v.Verify(r)
	assert.NoError(t, err)
}

func TestVerifyMalformed(t *testing.T) {
	s, v := hsSetup(t)
	tok := signVerified(t, s)
	parts := strings.Split(tok, ".")
	for name, in := range map[string]string{
		"garbage":          "hello",
		"two parts":        parts[0] + "." + parts[1],
		"four parts":       tok + ".AAAA",
		"padding":          parts[0] + "." + parts[1] + "=." + parts[2],
		"standard base64":  strings.ReplaceAll(tok, "-", "+") + "+/",
		"space":            " " + tok,
		"newline inside":   parts[0] + ".\n" + parts[1] + "." + parts[2],
		"empty header":     "." + parts[1] + "." + parts[2],
		"empty payload":    parts[0] + ".." + parts[2],
		"too long":         strings.Repeat("A", MaxTokenBytes+1),
		"bad length":       parts[0] + "." + parts[1] + strings.Repeat("A", 5-len(parts[1])%4) + "." + parts[2],
		"non-canonical":    parts[0] + "." + parts[1] + "." + noncanonical(parts[2]),
		"header not json":  b64([]byte("not json")) + "." + parts[1] + "." + parts[2],
		"JSON serializing": `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`,
	} {
		_, err := v.VerifyToken(in, KindVerified)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}

	// A payload swapped under the original signature fails on the signature
	// before it is decoded.
	_, err := v.VerifyToken(parts[0]+"."+b64([]byte(`[1,2]`))+"."+parts[2], KindVerified)
	assert.ErrorIs(t, err, ErrSignature)

	// Claims of the wrong type, correctly signed.
	k := hsKey(t, "hs1", testSecret)
	for name, c := range map[string]any{
		"aud array":   map[string]any{"aud": []string{"pi-app"}},
		"iat string":  map[string]any{"iat": "now"},
		"payment str": map[string]any{"payment": "paid"},
	} {
		_, err := v.VerifyToken(signRaw(t, k, TypeVerified, c), KindVerified)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
	for _, field := range []string{"jti", "phase", "htm", "htu", "bsh"} {
		m := map[string]any{}
		raw, _ := json.Marshal(validClaims(KindVerified))
		require.NoError(t, json.Unmarshal(raw, &m))
		delete(m, field)
		_, err := v.VerifyToken(signRaw(t, k, TypeVerified, m), KindVerified)
		assert.ErrorIs(t, err, ErrMalformed, field)
	}
}

// noncanonical changes the unused low bits of the last character, which a
// lenient base64 decoder ignores.
func noncanonical(seg string) string {
	last := b64Value(seg[len(seg)-1])
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return seg[:len(seg)-1] + string(alphabet[last|1])
}

func TestIsCompactJWS(t *testing.T) {
	assert.True(t, isCompactJWS("eyI.eyI.abc"))
	assert.True(t, isCompactJWS("eyI.eyI."), "empty signature parses (and fails as alg none)")
	assert.False(t, isCompactJWS("eyI.eyI"))
	assert.False(t, isCompactJWS("eyI..abc"))
	assert.False(t, isCompactJWS("eyI.eyI.abc.d"))
	assert.False(t, isCompactJWS("eyI.eyI.ab=c"))
	assert.False(t, isCompactJWS("eyJ.eyI.abc"), "J has non-zero unused bits")
	assert.False(t, isCompactJWS("eyI.eyI.A"), "length 1 mod 4")
	assert.False(t, isCompactJWS("eyI.eyI.AB"), "B has non-zero unused bits")
	assert.True(t, isCompactJWS("eyI.eyI.AA"))
}

func TestVerifyConvenience(t *testing.T) {
	s, _ := hsSetup(t)
	c, err := Verify(verifiedRequest(signVerified(t, s)), Options{Keys: []Key{hsKey(t, "hs1", testSecret)}, Now: fixedNow})
	require.NoError(t, err)
	assert.Equal(t, testPaymentID, c.Subject)
	_, err = Verify(verifiedRequest(""), Options{})
	assert.Error(t, err)
}
