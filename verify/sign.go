package verify

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// SignerOptions configures a Signer.
type SignerOptions struct {
	// Keys: the signer signs with Keys[0], which must be able to sign, and
	// puts its id in the header "kid" (none when the id is empty). The other keys are ignored here; list
	// the same slice to NewVerifier so that rotation is one setting.
	Keys []Key
	// Issuer and Audience default to DefaultIssuer and DefaultAudience.
	Issuer, Audience string
	// TTL is exp - iat, rounded up to whole seconds; default DefaultTTL.
	TTL time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Signer makes tokens. It is safe for concurrent use.
type Signer struct {
	key              Key
	issuer, audience string
	ttl              int64 // seconds
	now              func() time.Time
	rand             io.Reader // nil for crypto/rand; set only by tests
	verified, notice *compactSigner
}

// Binding is the request as the guard forwards it, which a token is bound to.
type Binding struct {
	// Method is the HTTP method, e.g. "POST".
	Method string
	// Path is the URL path, without query string, as forwarded.
	Path string
	// Body is the forwarded body, exactly.
	Body []byte
}

// NewSigner checks o and returns a Signer.
func NewSigner(o SignerOptions) (*Signer, error) {
	if len(o.Keys) == 0 {
		return nil, errors.New("verify: signer: no keys")
	}
	k := o.Keys[0]
	if err := k.check(); err != nil {
		return nil, fmt.Errorf("verify: signer: %w", err)
	}
	if !k.CanSign() {
		return nil, fmt.Errorf("verify: signer: %v cannot sign (verify-only key)", k)
	}
	if o.TTL < 0 {
		return nil, fmt.Errorf("verify: signer: negative TTL %v", o.TTL)
	}
	s := &Signer{
		key:      k,
		issuer:   orDefault(o.Issuer, DefaultIssuer),
		audience: orDefault(o.Audience, DefaultAudience),
		ttl:      int64((o.TTL + time.Second - 1) / time.Second),
		now:      o.Now,
	}
	if o.TTL == 0 {
		s.ttl = int64(DefaultTTL / time.Second)
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if s.verified, err = newCompactSigner(k, TypeVerified); err != nil {
		return nil, err
	}
	if s.notice, err = newCompactSigner(k, TypeNotice); err != nil {
		return nil, err
	}
	return s, nil
}

// KeyID returns the id of the key the signer signs with ("" for none).
func (s *Signer) KeyID() string { return s.key.ID }

// Sign returns a compact JWT of the given kind for payment p, bound to the
// forwarded request b. It sets iss, aud, sub (p.Identifier), iat, exp
// (iat + TTL), jti (128 random bits), the header typ of the kind, and kid
// (unless the key's id is empty).
//
// It refuses a KindVerified token unless p is marked developer_completed with
// a transaction, so that the guard cannot vouch for an unfinished payment.
// userUID is the authenticated Pi user, or "" when user binding is off.
func (s *Signer) Sign(kind Kind, phase string, p *piclient.Payment, b Binding, userUID string) (string, error) {
	if !validKind(kind) {
		return "", fmt.Errorf("verify: sign: unknown kind %q", kind)
	}
	if !validPhase(phase) {
		return "", fmt.Errorf("verify: sign: unknown phase %q", phase)
	}
	if p == nil {
		return "", errors.New("verify: sign: nil payment")
	}
	if err := piclient.ValidatePaymentID(p.Identifier); err != nil {
		return "", fmt.Errorf("verify: sign: %w", err)
	}
	if kind == KindVerified && !isCompleted(p) {
		return "", fmt.Errorf("verify: sign: payment %s is not completed with a transaction; only a notice can be signed", p.Identifier)
	}
	if b.Method == "" || b.Path == "" {
		return "", errors.New("verify: sign: binding needs a method and a path")
	}
	// jti and bsh, base64url, in one string: one allocation for both.
	var jti [16]byte
	if err := s.readJTI(&jti); err != nil {
		return "", fmt.Errorf("verify: sign: random jti: %w", err)
	}
	sum := sha256.Sum256(b.Body)
	var ids [jtiLen + bshLen]byte
	base64.RawURLEncoding.Encode(ids[:jtiLen], jti[:])
	base64.RawURLEncoding.Encode(ids[jtiLen:], sum[:])
	idText := string(ids[:])
	iat := s.now().Unix()
	c := Claims{
		Issuer:     s.issuer,
		Subject:    p.Identifier,
		Audience:   s.audience,
		IssuedAt:   iat,
		Expiry:     iat + s.ttl,
		ID:         idText[:jtiLen],
		Kind:       kind,
		Phase:      phase,
		Payment:    *p,
		AmountText: AmountText(p.Amount),
		Method:     b.Method,
		Path:       b.Path,
		BodySHA256: idText[jtiLen:],
		UserUID:    userUID,
	}
	signer := s.notice
	if kind == KindVerified {
		signer = s.verified
	}
	return signToken(signer, &c)
}

// Lengths of jti (128 bits) and bsh (SHA-256), base64url without padding.
const (
	jtiLen = 22
	bshLen = 43
)

// readJTI fills jti with random bytes.
func (s *Signer) readJTI(jti *[16]byte) error {
	if s.rand == nil {
		// Unlike a call through an io.Reader, rand.Read lets jti stay on
		// the stack.
		_, err := rand.Read(jti[:])
		return err
	}
	b := make([]byte, len(jti))
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return err
	}
	copy(jti[:], b)
	return nil
}

// signToken serialises c and signs it.
func signToken(signer *compactSigner, c *Claims) (string, error) {
	st := signer.state()
	defer signer.release(st)
	payload, ok := appendClaims(st.payload[:0], c)
	if ok {
		st.payload = payload
	} else {
		// Something only encoding/json can rule on: it returns the error
		// (or, should it accept, the bytes).
		var err error
		if payload, err = marshalClaims(*c); err != nil {
			return "", fmt.Errorf("verify: sign: encoding claims: %w", err)
		}
	}
	if n := signer.tokenLen(len(payload)); n > MaxTokenBytes {
		return "", fmt.Errorf("verify: sign: token is %d bytes, longer than MaxTokenBytes (%d); the payment's metadata is too large for a header", n, MaxTokenBytes)
	}
	return signer.signWith(st, payload), nil
}

// marshalClaims is json.Marshal(&c), for the claims appendClaims declines.
// c is a copy so that the caller's, which json.Marshal would make escape,
// stays on the stack.
func marshalClaims(c Claims) ([]byte, error) { return json.Marshal(&c) }

// BodyDigest returns the "bsh" of body: its SHA-256, base64url without
// padding.
func BodyDigest(body []byte) string {
	sum := sha256.Sum256(body)
	var d [bshLen]byte
	base64.RawURLEncoding.Encode(d[:], sum[:])
	return string(d[:])
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
