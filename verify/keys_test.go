package verify

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// opensslEd25519PEM was written by `openssl genpkey -algorithm ed25519` for
// this test only; its public key, base64url, is opensslEd25519X.
const (
	opensslEd25519PEM = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIB+NRjEibRiYOGuFljRkKFCfU6NuNcKi6X2muGZnQKm9
-----END PRIVATE KEY-----
`
	opensslEd25519X = "ENDj4HUQMnpllyvPEVwVdEyPW59nHQW4UyrhtI-7bq8"

	// opensslP256PEM is a PKCS#8 P-256 key: valid PEM, wrong curve.
	opensslP256PEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgX40XX5zHPxUU/ogQ
YXou8EPPxHChbUbshxyReg99iLGhRANCAAQXueG9hZP4wlfnQgfltdmpi8yKCZH6
sTNjQ+Fm1Kw30ckvTGeq8o+imMhDU/KUxK78F3/mpHh5hHxmiLRmfnpX
-----END PRIVATE KEY-----
`
)

func TestHS256Key(t *testing.T) {
	_, err := HS256Key("hs1", make([]byte, 31))
	assert.ErrorContains(t, err, "at least 32")
	_, err = HS256Key(strings.Repeat("k", 129), testSecret)
	assert.ErrorContains(t, err, "key id")
	_, err = HS256Key("has space", testSecret)
	assert.ErrorContains(t, err, "key id")

	secret := append([]byte(nil), testSecret...)
	k, err := HS256Key("hs1", secret)
	require.NoError(t, err)
	secret[0] ^= 0xff // the key keeps its own copy
	assert.True(t, k.CanSign())
	assert.False(t, k.Public().CanSign(), "Public of an HS256 key is verify-only")
	assert.Equal(t, "hs1", k.Public().ID)

	// k kept the original secret: tokens signed with testSecret verify.
	s := newTestSigner(t, SignerOptions{Keys: []Key{hsKey(t, "hs1", testSecret)}})
	_, err = newTestVerifier(t, Options{Keys: []Key{k}}).VerifyToken(signVerified(t, s), KindVerified)
	assert.NoError(t, err)
}

func TestKeyNeverPrintsSecret(t *testing.T) {
	k := hsKey(t, "hs1", testSecret)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		assert.NotContains(t, s, string(testSecret[:10]))
		assert.Contains(t, s, "hs1")
	}
}

func TestEd25519Keys(t *testing.T) {
	k := edKey(t, "ed1", testEdSeed)
	assert.True(t, k.CanSign())
	pub := k.Public()
	assert.False(t, pub.CanSign())
	assert.Equal(t, AlgEdDSA, pub.Algorithm)

	_, err := Ed25519Key("ed1", ed25519.PrivateKey(make([]byte, 10)))
	assert.Error(t, err)
	_, err = Ed25519PublicKey("ed1", ed25519.PublicKey(make([]byte, 10)))
	assert.Error(t, err)

	p, err := Ed25519PublicKey("ed1", ed25519.NewKeyFromSeed(testEdSeed).Public().(ed25519.PublicKey))
	require.NoError(t, err)
	s := newTestSigner(t, SignerOptions{Keys: []Key{k}})
	_, err = newTestVerifier(t, Options{Keys: []Key{p}}).VerifyToken(signVerified(t, s), KindVerified)
	assert.NoError(t, err)
}

func TestParseEd25519PrivateKeyPEM(t *testing.T) {
	k, err := ParseEd25519PrivateKeyPEM("ossl", []byte(opensslEd25519PEM))
	require.NoError(t, err)
	assert.True(t, k.CanSign())
	assert.Equal(t, AlgEdDSA, k.Algorithm)

	set, err := JWKS([]Key{k})
	require.NoError(t, err)
	assert.Contains(t, string(set), `"x":"`+opensslEd25519X+`"`, "public key must match openssl's")

	s := newTestSigner(t, SignerOptions{Keys: []Key{k}})
	_, err = newTestVerifier(t, Options{Keys: []Key{k.Public()}}).VerifyToken(signVerified(t, s), KindVerified)
	assert.NoError(t, err)

	for name, in := range map[string]string{
		"empty":      "",
		"not pem":    "hello",
		"P-256 key":  opensslP256PEM,
		"wrong type": "-----BEGIN EC PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB+NRjEibRiYOGuFljRkKFCfU6NuNcKi6X2muGZnQKm9\n-----END EC PRIVATE KEY-----\n",
		"garbage":    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	} {
		_, err := ParseEd25519PrivateKeyPEM("x", []byte(in))
		assert.Error(t, err, name)
	}
}

func TestJWKSRoundTrip(t *testing.T) {
	ed1, ed2 := edKey(t, "ed1", testEdSeed), edKey(t, "ed2", []byte("0123456789abcdef0123456789abcdef"))
	hs := hsKey(t, "hs1", testSecret)
	data, err := JWKS([]Key{ed1, hs, ed2.Public()})
	require.NoError(t, err)
	assert.NotContains(t, string(data), "hs1", "HS keys never appear")
	assert.NotContains(t, string(data), `"d"`, "no private material")

	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(data, &doc))
	require.Len(t, doc.Keys, 2)
	for i, id := range []string{"ed1", "ed2"} {
		assert.Equal(t, id, doc.Keys[i]["kid"])
		assert.Equal(t, "OKP", doc.Keys[i]["kty"])
		assert.Equal(t, "Ed25519", doc.Keys[i]["crv"])
		assert.Equal(t, "EdDSA", doc.Keys[i]["alg"])
		assert.Equal(t, "sig", doc.Keys[i]["use"])
	}

	keys, err := ParseJWKS(data)
	require.NoError(t, err)
	require.Len(t, keys, 2)
	assert.Equal(t, ed1.Public(), keys[0])
	assert.Equal(t, ed2.Public(), keys[1])

	// Tokens of either key verify with the parsed set.
	v := newTestVerifier(t, Options{Keys: keys})
	for _, k := range []Key{ed1, ed2} {
		_, err := v.VerifyToken(signVerified(t, newTestSigner(t, SignerOptions{Keys: []Key{k}})), KindVerified)
		assert.NoError(t, err, k.ID)
	}

	empty, err := JWKS([]Key{hs})
	require.NoError(t, err)
	assert.JSONEq(t, `{"keys":[]}`, string(empty))
}

func TestParseJWKSRejects(t *testing.T) {
	const x = `"x":"` + opensslEd25519X + `"`
	for name, in := range map[string]string{
		"not json":      `{`,
		"empty":         `{"keys":[]}`,
		"only rsa":      `{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`,
		"private":       `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a",` + x + `,"d":"H41GMSJtGJg4a4WWNGQoUJ9To241wqLpfaa4ZmdAqb0"}]}`,
		"wrong alg":     `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","alg":"ES256",` + x + `}]}`,
		"duplicate kid": `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a",` + x + `},{"kty":"OKP","crv":"Ed25519","kid":"a",` + x + `}]}`,
		"enc only":      `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","use":"enc",` + x + `}]}`,
	} {
		_, err := ParseJWKS([]byte(in))
		assert.Error(t, err, name)
	}

	// A key without kid has an empty ID.
	keys, err := ParseJWKS([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519",` + x + `}]}`))
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Empty(t, keys[0].ID)

	// Foreign keys are skipped, not fatal.
	keys, err = ParseJWKS([]byte(`{"keys":[{"kty":"EC","kid":"e","crv":"P-256","x":"AA","y":"AA"},{"kty":"OKP","crv":"Ed25519","kid":"a",` + x + `}]}`))
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, "a", keys[0].ID)
}

func TestNewVerifierRejects(t *testing.T) {
	hs := hsKey(t, "k", testSecret)
	for name, o := range map[string]Options{
		"no keys":        {},
		"hand-made key":  {Keys: []Key{{ID: "k", Algorithm: AlgHS256}}},
		"unknown alg":    {Keys: []Key{{ID: "k", Algorithm: "RS256"}}},
		"duplicate kid":  {Keys: []Key{hs, edKey(t, "k", testEdSeed)}},
		"negative limit": {Keys: []Key{hs}, MaxBodyBytes: -1},
	} {
		_, err := NewVerifier(o)
		assert.Error(t, err, name)
	}
}
