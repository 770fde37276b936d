package verify

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// JWKS returns the public JWK Set (RFC 7517) of the EdDSA keys among keys, in
// the order given, each as
//
//	{"kty":"OKP","crv":"Ed25519","x":"...","kid":"...","alg":"EdDSA","use":"sig"}
//
// (without "kid" for a key with an empty ID). HS256 keys are secret and never
// appear. The guard serves this document so that apps can verify without
// sharing a secret.
func JWKS(keys []Key) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	seen := map[string]bool{}
	for _, k := range keys {
		if k.Algorithm != AlgEdDSA {
			continue
		}
		if err := k.check(); err != nil {
			return nil, err
		}
		if k.ID != "" && seen[k.ID] {
			return nil, fmt.Errorf("verify: jwks: key id %q is used by more than one key", k.ID)
		}
		seen[k.ID] = true
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.pub, KeyID: k.ID, Algorithm: AlgEdDSA, Use: "sig"})
	}
	return json.Marshal(set)
}

// ParseJWKS returns the EdDSA public keys of a JWK Set, as verify-only Keys.
// Keys of other types (kty other than "OKP") or uses ("enc") are skipped. It
// fails on a set holding private key material, on an Ed25519 key with an
// "alg" other than EdDSA, on duplicate kids, and when no usable key is left.
// A key without kid becomes a Key with an empty ID.
func ParseJWKS(data []byte) ([]Key, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("verify: jwks: %w", err)
	}
	var keys []Key
	seen := map[string]bool{}
	for i, raw := range set.Keys {
		var meta struct {
			Kty string `json:"kty"`
			Use string `json:"use"`
			Alg string `json:"alg"`
			D   string `json:"d"`
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, fmt.Errorf("verify: jwks: key %d: %w", i, err)
		}
		if meta.D != "" {
			return nil, fmt.Errorf("verify: jwks: key %d holds private key material; publish public keys only", i)
		}
		if meta.Kty != "OKP" || (meta.Use != "" && meta.Use != "sig") {
			continue
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("verify: jwks: key %d: %w", i, err)
		}
		pub, ok := jwk.Key.(ed25519.PublicKey)
		if !ok {
			continue // another OKP curve (X25519 ...)
		}
		if meta.Alg != "" && meta.Alg != AlgEdDSA {
			return nil, fmt.Errorf("verify: jwks: Ed25519 key %q has alg %q, want %s", jwk.KeyID, meta.Alg, AlgEdDSA)
		}
		k, err := Ed25519PublicKey(jwk.KeyID, pub)
		if err != nil {
			return nil, fmt.Errorf("verify: jwks: key %d: %w", i, err)
		}
		if k.ID != "" && seen[k.ID] {
			return nil, fmt.Errorf("verify: jwks: key id %q is used by more than one key", k.ID)
		}
		seen[k.ID] = true
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("verify: jwks: no Ed25519 signing key in the set")
	}
	return keys, nil
}
