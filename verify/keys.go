package verify

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Signature algorithms, as in the JWT header "alg".
const (
	AlgHS256 = "HS256" // HMAC-SHA256 with a shared secret
	AlgEdDSA = "EdDSA" // Ed25519
)

// MinSecretBytes is the shortest HS256 secret accepted (RFC 7518 §3.2).
const MinSecretBytes = 32

// Key is a signing or verification key with its key id ("kid"). Make one with
// HS256Key, Ed25519Key, Ed25519PublicKey, ParseEd25519PrivateKeyPEM or
// ParseJWKS; a Key built by hand has no key material and is refused.
//
// The id may be empty. A signer with such a key writes no "kid"; a verifier
// tries such a key for every token of its algorithm whose kid names none of
// its other keys, so an app that knows only the shared secret verifies the
// guard's tokens whatever kid the guard chose.
//
// A Key never prints its secret: String and GoString show only the id and
// algorithm.
type Key struct {
	// ID is the key id placed in (and looked up from) the JWT header "kid";
	// it may be empty (see above).
	ID string
	// Algorithm is AlgHS256 or AlgEdDSA.
	Algorithm string

	secret     []byte             // HS256
	priv       ed25519.PrivateKey // EdDSA, nil when verify-only
	pub        ed25519.PublicKey  // EdDSA
	verifyOnly bool               // HS256 key returned by Public
}

// HS256Key returns an HMAC-SHA256 key. The secret must be at least
// MinSecretBytes long; it is copied.
func HS256Key(id string, secret []byte) (Key, error) {
	if err := checkKeyID(id); err != nil {
		return Key{}, err
	}
	if len(secret) < MinSecretBytes {
		return Key{}, fmt.Errorf("verify: HS256 key %q: secret is %d bytes, must be at least %d", id, len(secret), MinSecretBytes)
	}
	return Key{ID: id, Algorithm: AlgHS256, secret: append([]byte(nil), secret...)}, nil
}

// Ed25519Key returns an EdDSA key that can sign and verify.
func Ed25519Key(id string, priv ed25519.PrivateKey) (Key, error) {
	if err := checkKeyID(id); err != nil {
		return Key{}, err
	}
	if len(priv) != ed25519.PrivateKeySize {
		return Key{}, fmt.Errorf("verify: EdDSA key %q: private key is %d bytes, must be %d", id, len(priv), ed25519.PrivateKeySize)
	}
	priv = append(ed25519.PrivateKey(nil), priv...)
	pub := append(ed25519.PublicKey(nil), priv.Public().(ed25519.PublicKey)...)
	return Key{ID: id, Algorithm: AlgEdDSA, priv: priv, pub: pub}, nil
}

// Ed25519PublicKey returns an EdDSA key that can only verify.
func Ed25519PublicKey(id string, pub ed25519.PublicKey) (Key, error) {
	if err := checkKeyID(id); err != nil {
		return Key{}, err
	}
	if len(pub) != ed25519.PublicKeySize {
		return Key{}, fmt.Errorf("verify: EdDSA key %q: public key is %d bytes, must be %d", id, len(pub), ed25519.PublicKeySize)
	}
	return Key{ID: id, Algorithm: AlgEdDSA, pub: append(ed25519.PublicKey(nil), pub...)}, nil
}

// ParseEd25519PrivateKeyPEM reads an Ed25519 private key from a PKCS#8
// "PRIVATE KEY" PEM block, as written by
//
//	openssl genpkey -algorithm ed25519 -out guard-ed25519.pem
func ParseEd25519PrivateKeyPEM(id string, pemBytes []byte) (Key, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return Key{}, fmt.Errorf("verify: EdDSA key %q: no PEM block found", id)
	}
	if block.Type != "PRIVATE KEY" {
		return Key{}, fmt.Errorf("verify: EdDSA key %q: PEM block is %q, want \"PRIVATE KEY\" (PKCS#8)", id, block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("verify: EdDSA key %q: not a PKCS#8 private key", id)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return Key{}, fmt.Errorf("verify: EdDSA key %q: PKCS#8 key is %T, not Ed25519", id, k)
	}
	return Ed25519Key(id, priv)
}

// Public returns the verification-only form of k: for EdDSA the public key
// alone; for HS256, where one secret both signs and verifies, a copy of k that
// refuses to sign (it still holds the secret: never publish it).
func (k Key) Public() Key {
	switch k.Algorithm {
	case AlgEdDSA:
		return Key{ID: k.ID, Algorithm: k.Algorithm, pub: k.pub}
	case AlgHS256:
		return Key{ID: k.ID, Algorithm: k.Algorithm, secret: k.secret, verifyOnly: true}
	}
	return Key{ID: k.ID, Algorithm: k.Algorithm}
}

// CanSign reports whether k holds signing material.
func (k Key) CanSign() bool {
	switch k.Algorithm {
	case AlgEdDSA:
		return len(k.priv) == ed25519.PrivateKeySize
	case AlgHS256:
		return len(k.secret) >= MinSecretBytes && !k.verifyOnly
	}
	return false
}

// String describes the key without its material.
func (k Key) String() string {
	return fmt.Sprintf("%s key %q", k.Algorithm, k.ID)
}

// GoString describes the key without its material, for %#v.
func (k Key) GoString() string {
	return fmt.Sprintf("verify.Key{ID: %q, Algorithm: %q}", k.ID, k.Algorithm)
}

// verificationKey is what go-jose verifies with: the secret or the public key.
func (k Key) verificationKey() any {
	if k.Algorithm == AlgHS256 {
		return k.secret
	}
	return k.pub
}

// check reports whether k holds verification material for its algorithm.
func (k Key) check() error {
	if err := checkKeyID(k.ID); err != nil {
		return err
	}
	switch k.Algorithm {
	case AlgHS256:
		if len(k.secret) < MinSecretBytes {
			return fmt.Errorf("verify: %v has no secret (make keys with HS256Key)", k)
		}
	case AlgEdDSA:
		if len(k.pub) != ed25519.PublicKeySize {
			return fmt.Errorf("verify: %v has no public key (make keys with Ed25519Key or Ed25519PublicKey)", k)
		}
	default:
		return fmt.Errorf("verify: key %q: algorithm %q is not %s or %s", k.ID, k.Algorithm, AlgHS256, AlgEdDSA)
	}
	return nil
}

// checkKeys checks every key and that non-empty key ids are distinct.
func checkKeys(keys []Key) error {
	if len(keys) == 0 {
		return errors.New("verify: no keys")
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if err := k.check(); err != nil {
			return err
		}
		if k.ID == "" {
			continue
		}
		if seen[k.ID] {
			return fmt.Errorf("verify: key id %q is used by more than one key", k.ID)
		}
		seen[k.ID] = true
	}
	return nil
}

func checkKeyID(id string) error {
	if len(id) > 128 {
		return errors.New("verify: key id is longer than 128 bytes")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("verify: key id %q must be printable ASCII without spaces", id)
		}
	}
	return nil
}
