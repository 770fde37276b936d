package verify

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// maxUnixTime (9999-12-31T23:59:59Z) bounds iat and exp.
const maxUnixTime = 253402300799

// Options configures a Verifier.
type Options struct {
	// Keys are the keys a token may be signed with; any of them is accepted,
	// so a rotation lists the old and the new key. A token's algorithm is
	// pinned to its key's. A token whose kid names a key is checked against
	// that key only; one whose kid names none against the keys with an empty
	// id and its algorithm (none: refused as an unknown kid); one without kid
	// against every key of its algorithm.
	Keys []Key
	// Issuer and Audience default to DefaultIssuer and DefaultAudience.
	Issuer, Audience string
	// Leeway is the clock skew allowed on exp and iat; zero means
	// DefaultLeeway and a negative value means none.
	Leeway time.Duration
	// MaxBodyBytes bounds the body read to check its digest; zero means
	// MaxBodyBytes. A longer body fails with ErrBodyTooLarge.
	MaxBodyBytes int64
	// PaymentID, if set, is the only payment id ("sub") accepted.
	PaymentID string
	// SkipBody turns off the body digest check (the method and path are still
	// checked): for apps whose body was already consumed or rewritten.
	SkipBody bool
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	byID             map[string]Key
	keys             []Key
	algs             []jose.SignatureAlgorithm
	issuer, audience string
	leeway           time.Duration
	maxBody          int64
	paymentID        string
	skipBody         bool
	now              func() time.Time
}

// NewVerifier checks o and returns a Verifier.
func NewVerifier(o Options) (*Verifier, error) {
	if err := checkKeys(o.Keys); err != nil {
		return nil, err
	}
	if o.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("verify: negative MaxBodyBytes %d", o.MaxBodyBytes)
	}
	v := &Verifier{
		byID:      make(map[string]Key, len(o.Keys)),
		keys:      make([]Key, len(o.Keys)),
		issuer:    orDefault(o.Issuer, DefaultIssuer),
		audience:  orDefault(o.Audience, DefaultAudience),
		leeway:    o.Leeway,
		maxBody:   o.MaxBodyBytes,
		paymentID: o.PaymentID,
		skipBody:  o.SkipBody,
		now:       o.Now,
	}
	for i, k := range o.Keys {
		k = k.Public() // a verifier never needs to sign
		v.keys[i] = k
		if k.ID != "" {
			v.byID[k.ID] = k
		}
		if alg := jose.SignatureAlgorithm(k.Algorithm); !slices.Contains(v.algs, alg) {
			v.algs = append(v.algs, alg)
		}
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.maxBody == 0 {
		v.maxBody = MaxBodyBytes
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Verify checks the request's Pi-Payment-Verified header and returns its
// claims. It checks, in order: that the header is present exactly once; the
// token syntax; the algorithm against the configured keys; the signature; typ
// and kind; iss; aud; exp and iat with leeway; the payment id (sub equals
// payment.identifier, and Options.PaymentID if set); that the payment is
// completed with a transaction; and the request binding: htm equals
// r.Method, htu equals r.URL.Path and, unless SkipBody, bsh equals the
// SHA-256 of the body.
//
// To digest the body Verify reads it (at most MaxBodyBytes) and then puts it
// back: r.Body yields the same bytes again and r.ContentLength is set, so the
// next handler can read it as if untouched.
//
// A nil error means the payment is paid. Any error means it must be treated
// as not paid.
func (v *Verifier) Verify(r *http.Request) (*Claims, error) {
	return v.verifyRequest(r, KindVerified)
}

// VerifyNotice is Verify for the Pi-Payment-Notice header: it checks the same,
// except that the token must be a notice and the payment need not be
// completed. A notice is never proof of payment.
func (v *Verifier) VerifyNotice(r *http.Request) (*Claims, error) {
	return v.verifyRequest(r, KindNotice)
}

// Verify is a shortcut for NewVerifier(o) followed by Verify(r).
func Verify(r *http.Request, o Options) (*Claims, error) {
	v, err := NewVerifier(o)
	if err != nil {
		return nil, err
	}
	return v.Verify(r)
}

func (v *Verifier) verifyRequest(r *http.Request, kind Kind) (*Claims, error) {
	name := HeaderVerified
	if kind == KindNotice {
		name = HeaderNotice
	}
	vals := r.Header.Values(name)
	switch len(vals) {
	case 0:
		return nil, fmt.Errorf("%w: no %s header", ErrMissing, name)
	case 1:
	default:
		return nil, fmt.Errorf("%w: %s header appears %d times, want once", ErrMalformed, name, len(vals))
	}
	c, err := v.VerifyToken(vals[0], kind)
	if err != nil {
		return nil, fmt.Errorf("%s header: %w", name, err)
	}
	if err := v.checkBinding(r, c); err != nil {
		return nil, fmt.Errorf("%s header: %w", name, err)
	}
	return c, nil
}

func (v *Verifier) checkBinding(r *http.Request, c *Claims) error {
	if c.Method != r.Method {
		return fmt.Errorf("%w: token is for method %q, request is %q", ErrBinding, c.Method, r.Method)
	}
	var path string
	if r.URL != nil {
		path = r.URL.Path
	}
	if c.Path != path {
		return fmt.Errorf("%w: token is for path %q, request is for %q", ErrBinding, c.Path, path)
	}
	if v.skipBody {
		return nil
	}
	body, err := bufferBody(r, v.maxBody)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(BodyDigest(body)), []byte(c.BodySHA256)) != 1 {
		return fmt.Errorf("%w: body digest differs from the token's bsh (body of %d bytes)", ErrBinding, len(body))
	}
	return nil
}

// VerifyToken checks a token of the given kind alone, without a request: it
// does everything Verify does except the htm, htu and bsh checks. Use it only
// when the request binding is checked another way.
func (v *Verifier) VerifyToken(token string, kind Kind) (*Claims, error) {
	if !validKind(kind) {
		return nil, fmt.Errorf("%w: unknown kind %q requested", ErrKind, kind)
	}
	if token == "" {
		return nil, fmt.Errorf("%w: empty token", ErrMalformed)
	}
	if len(token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: token is %d bytes, more than %d", ErrMalformed, len(token), MaxTokenBytes)
	}
	if !isCompactJWS(token) {
		return nil, fmt.Errorf("%w: not a compact JWS (three base64url parts separated by dots)", ErrMalformed)
	}
	tok, err := jwt.ParseSigned(token, v.algs)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, fmt.Errorf("%w: algorithm %q is not accepted, keys are %v", ErrSignature, alg.Got, v.algs)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(tok.Headers) != 1 {
		return nil, fmt.Errorf("%w: %d signatures, want 1", ErrMalformed, len(tok.Headers))
	}
	h := tok.Headers[0]
	c, err := v.verifySignature(tok, h)
	if err != nil {
		return nil, err
	}
	if err := v.checkClaims(h, c, kind); err != nil {
		return nil, err
	}
	return c, nil
}

// verifySignature pins the algorithm to the key and decodes the claims once
// the signature verifies.
func (v *Verifier) verifySignature(tok *jwt.JSONWebToken, h jose.Header) (*Claims, error) {
	if h.JSONWebKey != nil {
		return nil, fmt.Errorf("%w: embedded jwk header not accepted", ErrSignature)
	}
	var candidates []Key
	if k, ok := v.byID[h.KeyID]; ok && h.KeyID != "" {
		if k.Algorithm != h.Algorithm {
			return nil, fmt.Errorf("%w: token algorithm %q, but key %q is %s", ErrSignature, h.Algorithm, k.ID, k.Algorithm)
		}
		candidates = []Key{k}
	} else {
		for _, k := range v.keys {
			if k.Algorithm == h.Algorithm && (h.KeyID == "" || k.ID == "") {
				candidates = append(candidates, k)
			}
		}
		if h.KeyID != "" && len(candidates) == 0 {
			return nil, fmt.Errorf("%w: unknown key id %q", ErrSignature, h.KeyID)
		}
	}
	for _, k := range candidates {
		c := new(Claims)
		err := tok.Claims(k.verificationKey(), c)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, jose.ErrCryptoFailure) {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	if len(candidates) == 1 && candidates[0].ID != "" {
		return nil, fmt.Errorf("%w: signature does not verify with key %q", ErrSignature, candidates[0].ID)
	}
	return nil, fmt.Errorf("%w: signature does not verify with any %s key (%d tried)", ErrSignature, h.Algorithm, len(candidates))
}

// checkClaims checks everything but the signature and the request binding.
func (v *Verifier) checkClaims(h jose.Header, c *Claims, kind Kind) error {
	want := typeOf(kind)
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != want {
		return fmt.Errorf("%w: typ is %q, want %q", ErrKind, typ, want)
	}
	if c.Kind != kind {
		return fmt.Errorf("%w: kind is %q, want %q", ErrKind, c.Kind, kind)
	}
	if c.Issuer != v.issuer {
		return fmt.Errorf("%w: iss is %q, want %q", ErrIssuer, c.Issuer, v.issuer)
	}
	if c.Audience != v.audience {
		return fmt.Errorf("%w: aud is %q, want %q", ErrAudience, c.Audience, v.audience)
	}
	if err := v.checkTimes(c); err != nil {
		return err
	}
	if c.ID == "" || c.Phase == "" || c.Method == "" || c.Path == "" || c.BodySHA256 == "" {
		return fmt.Errorf("%w: jti, phase, htm, htu and bsh are all required", ErrMalformed)
	}
	if err := piclient.ValidatePaymentID(c.Subject); err != nil {
		return fmt.Errorf("%w: sub: %v", ErrMalformed, err)
	}
	if c.Payment.Identifier != c.Subject {
		return fmt.Errorf("%w: sub %q differs from payment.identifier %q", ErrPaymentID, c.Subject, c.Payment.Identifier)
	}
	if v.paymentID != "" && c.Subject != v.paymentID {
		return fmt.Errorf("%w: token is for payment %q, expected %q", ErrPaymentID, c.Subject, v.paymentID)
	}
	if c.AmountText != "" && c.AmountText != AmountText(c.Payment.Amount) {
		return fmt.Errorf("%w: amount_text %q is not payment.amount %s", ErrMalformed, c.AmountText, c.Payment.Amount)
	}
	if kind == KindVerified && !isCompleted(&c.Payment) {
		return fmt.Errorf("%w: payment %s: developer_completed=%t, transaction present=%t",
			ErrNotCompleted, c.Subject, c.Payment.Status.DeveloperCompleted, c.Payment.TxID() != "")
	}
	return nil
}

func (v *Verifier) checkTimes(c *Claims) error {
	if c.IssuedAt <= 0 || c.IssuedAt > maxUnixTime || c.Expiry <= 0 || c.Expiry > maxUnixTime {
		return fmt.Errorf("%w: iat and exp must be Unix times in seconds", ErrMalformed)
	}
	if c.Expiry <= c.IssuedAt {
		return fmt.Errorf("%w: exp %d is not after iat %d", ErrMalformed, c.Expiry, c.IssuedAt)
	}
	now := v.now()
	exp, iat := time.Unix(c.Expiry, 0), time.Unix(c.IssuedAt, 0)
	if !now.Before(exp.Add(v.leeway)) {
		return fmt.Errorf("%w: exp %s, now %s (leeway %s)", ErrExpired, exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.leeway)
	}
	if iat.After(now.Add(v.leeway)) {
		return fmt.Errorf("%w: iat %s, now %s (leeway %s)", ErrNotYetValid, iat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.leeway)
	}
	return nil
}

// isCompactJWS reports whether s is three dot-separated base64url segments
// in canonical form (no padding, unused trailing bits zero), the header and
// payload non-empty. Canonical form makes the encoding non-malleable: two
// different strings never decode to the same token.
func isCompactJWS(s string) bool {
	parts, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			if b64Value(s[i]) < 0 {
				return false
			}
			continue
		}
		seg := s[start:i]
		if (parts < 2 && seg == "") || !canonicalB64(seg) {
			return false
		}
		parts++
		start = i + 1
	}
	return parts == 3
}

func canonicalB64(seg string) bool {
	if seg == "" {
		return true
	}
	last := b64Value(seg[len(seg)-1])
	switch len(seg) % 4 {
	case 1:
		return false
	case 2:
		return last&0x0f == 0
	case 3:
		return last&0x03 == 0
	}
	return true
}

func b64Value(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return -1
}
