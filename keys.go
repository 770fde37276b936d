package piguard

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// KeyConfig is one of the guard's keys. The first key of the list signs;
// the others are there for rotation: with EdDSA their public keys stay in
// the published JWK Set so that tokens signed before a rotation still verify.
type KeyConfig struct {
	// ID is the key's kid, sent in each token's header.
	ID string `json:"kid"`
	// Algorithm is "HS256" (a shared secret) or "EdDSA" (an Ed25519 key).
	Algorithm string `json:"alg"`
	// Secret is the HS256 secret, at least 32 bytes; placeholders such as
	// {env.*} and {file.*} are resolved at provisioning.
	Secret string `json:"secret,omitempty"`
	// KeyFile is the EdDSA key's PEM file: a PKCS#8 private key (openssl
	// genpkey -algorithm ed25519), or for a retired key only its public key
	// (openssl pkey -pubout), which is published but never signs.
	KeyFile string `json:"key_file,omitempty"`
}

// DefaultJWKSPath is a conventional place to publish the JWK Set.
const DefaultJWKSPath = "/.well-known/pi-guard/jwks.json"

// loadKeys resolves the configured keys: signing_key (one HS256 secret) or
// the keys list.
func (h *Handler) loadKeys(repl *caddy.Replacer) ([]verify.Key, error) {
	if h.SigningKey != "" && len(h.Keys) > 0 {
		return nil, errors.New("signing_key and keys are alternatives: use signing_key for one HS256 secret, keys for several or for EdDSA")
	}
	if len(h.Keys) == 0 {
		secret := strings.TrimSpace(repl.ReplaceKnown(h.SigningKey, ""))
		if secret == "" {
			return nil, errors.New("signing_key is empty: set it to a random secret of at least 32 bytes, for example signing_key {env.PI_GUARD_SIGNING_KEY} (openssl rand -base64 48)")
		}
		if len(secret) < MinSigningKeyBytes {
			return nil, fmt.Errorf("signing_key is %d bytes; it must be at least %d (generate one with: openssl rand -base64 48)", len(secret), MinSigningKeyBytes)
		}
		k, err := verify.HS256Key(keyID(secret), []byte(secret))
		return []verify.Key{k}, err
	}
	keys := make([]verify.Key, 0, len(h.Keys))
	for i, kc := range h.Keys {
		k, err := kc.load(repl)
		if err != nil {
			return nil, fmt.Errorf("keys[%d] (kid %q): %w", i, kc.ID, err)
		}
		keys = append(keys, k)
	}
	if !keys[0].CanSign() {
		return nil, fmt.Errorf("the first key (kid %q) signs, so it needs its private key, not only the public key", h.Keys[0].ID)
	}
	return keys, nil
}

func (kc KeyConfig) load(repl *caddy.Replacer) (verify.Key, error) {
	if kc.ID == "" {
		return verify.Key{}, errors.New("every key needs a kid")
	}
	switch kc.Algorithm {
	case verify.AlgHS256:
		secret := strings.TrimSpace(repl.ReplaceKnown(kc.Secret, ""))
		if len(secret) < MinSigningKeyBytes {
			return verify.Key{}, fmt.Errorf("the HS256 secret is %d bytes after resolving placeholders; it must be at least %d", len(secret), MinSigningKeyBytes)
		}
		return verify.HS256Key(kc.ID, []byte(secret))
	case verify.AlgEdDSA:
		path := repl.ReplaceKnown(kc.KeyFile, "")
		data, err := os.ReadFile(path)
		if err != nil {
			return verify.Key{}, fmt.Errorf("reading the EdDSA key file: %w", err)
		}
		if block, _ := pem.Decode(data); block != nil && block.Type == "PUBLIC KEY" {
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return verify.Key{}, fmt.Errorf("%s: %w", path, err)
			}
			edPub, ok := pub.(ed25519.PublicKey)
			if !ok {
				return verify.Key{}, fmt.Errorf("%s holds a %T public key, not Ed25519", path, pub)
			}
			return verify.Ed25519PublicKey(kc.ID, edPub)
		}
		return verify.ParseEd25519PrivateKeyPEM(kc.ID, data)
	}
	return verify.Key{}, fmt.Errorf("alg %q is not supported: use HS256 or EdDSA", kc.Algorithm)
}

// serveJWKS answers GET jwks_path with the public keys of the guard's EdDSA
// keys.
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	if r.Method == http.MethodGet {
		_, err := w.Write(h.jwks)
		return err
	}
	return nil
}
