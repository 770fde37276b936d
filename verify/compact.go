package verify

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"slices"
	"sync"
)

// compactSigner makes JWS compact serializations (RFC 7515 §7.1) of the
// guard's own claims, with the two algorithms a Key has: HS256 (HMAC-SHA256,
// RFC 7518 §3.2) and EdDSA (Ed25519, RFC 8037). The protected header is
// fixed per signer and encoded once; a token is then one base64 encoding of
// the payload and one MAC or signature, built in scratch buffers that are
// reused (states), so that the only allocation left is the token itself.
// With go-jose's signer a token cost 99 allocations and about twice the
// time. Tokens are parsed and verified with go-jose (Verifier), and the tests
// hold this signer's output byte for byte to go-jose's own.
type compactSigner struct {
	key    Key
	prefix string // base64url(protected header) + "."
	states sync.Pool
}

// signState is the scratch of one token, reused from one to the next.
type signState struct {
	payload []byte // the claims' JSON
	tok     []byte // the token as it is built
	mac     hash.Hash
	sum     [sha256.Size]byte
}

// maxKeptScratch bounds the buffers a signState keeps for the next token:
// tokens are at most MaxTokenBytes, but the claims of a refused one may be
// any size.
const maxKeptScratch = 4 * MaxTokenBytes

// protectedHeader is the header of every token: alg, kid (when the key has
// an id) and typ, in the order go-jose writes them.
type protectedHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ"`
}

func newCompactSigner(k Key, typ string) (*compactSigner, error) {
	if k.Algorithm != AlgHS256 && k.Algorithm != AlgEdDSA {
		return nil, fmt.Errorf("verify: signer: %v: unsupported algorithm", k)
	}
	raw, err := json.Marshal(protectedHeader{Alg: k.Algorithm, Kid: k.ID, Typ: typ})
	if err != nil {
		return nil, fmt.Errorf("verify: signer: %v: %w", k, err)
	}
	s := &compactSigner{key: k, prefix: base64.RawURLEncoding.EncodeToString(raw) + "."}
	s.states.New = func() any {
		st := &signState{payload: make([]byte, 0, 2048), tok: make([]byte, 0, 4096)}
		if k.Algorithm == AlgHS256 {
			st.mac = hmac.New(sha256.New, k.secret)
		}
		return st
	}
	return s, nil
}

func (s *compactSigner) state() *signState { return s.states.Get().(*signState) }

func (s *compactSigner) release(st *signState) {
	if cap(st.payload) > maxKeptScratch {
		st.payload = nil
	}
	if cap(st.tok) > maxKeptScratch {
		st.tok = nil
	}
	s.states.Put(st)
}

// tokenLen is the length of the token for a payload of n bytes.
func (s *compactSigner) tokenLen(n int) int {
	enc := base64.RawURLEncoding
	sigLen := sha256.Size
	if s.key.Algorithm == AlgEdDSA {
		sigLen = ed25519.SignatureSize
	}
	return len(s.prefix) + enc.EncodedLen(n) + 1 + enc.EncodedLen(sigLen)
}

// sign returns header.payload.signature for payload.
func (s *compactSigner) sign(payload []byte) string {
	st := s.state()
	defer s.release(st)
	return s.signWith(st, payload)
}

// signWith is sign with st's buffers; payload may be st.payload.
func (s *compactSigner) signWith(st *signState, payload []byte) string {
	enc := base64.RawURLEncoding
	buf := append(slices.Grow(st.tok[:0], s.tokenLen(len(payload))), s.prefix...)
	buf = enc.AppendEncode(buf, payload)
	var sig []byte
	if s.key.Algorithm == AlgEdDSA {
		sig = ed25519.Sign(s.key.priv, buf)
	} else {
		st.mac.Reset()
		st.mac.Write(buf)
		sig = st.mac.Sum(st.sum[:0])
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	st.tok = buf
	return string(buf)
}
