package verify

import "errors"

// Sentinel errors. Every error returned by a Verifier wraps exactly one of
// them (ErrBodyTooLarge also wraps ErrBinding), with details of what failed,
// so callers test with errors.Is.
var (
	// ErrMissing means the request has no such header.
	ErrMissing = errors.New("verify: header missing")
	// ErrMalformed means the header is duplicated, is not a compact JWS, is
	// too long, or its claims are missing or of the wrong type.
	ErrMalformed = errors.New("verify: malformed token")
	// ErrSignature means the algorithm is not one of the configured keys',
	// the key id is unknown, or the signature does not verify.
	ErrSignature = errors.New("verify: invalid signature")
	// ErrExpired means the token's exp is past, beyond the allowed clock skew.
	ErrExpired = errors.New("verify: token expired")
	// ErrNotYetValid means the token's iat is in the future, beyond the
	// allowed clock skew.
	ErrNotYetValid = errors.New("verify: token issued in the future")
	// ErrAudience means the aud claim is not the expected audience.
	ErrAudience = errors.New("verify: wrong audience")
	// ErrIssuer means the iss claim is not the expected issuer.
	ErrIssuer = errors.New("verify: wrong issuer")
	// ErrBinding means the token was issued for another method, path or body.
	ErrBinding = errors.New("verify: token not bound to this request")
	// ErrBodyTooLarge means the body exceeds the configured bound, so its
	// digest was not checked. It always comes together with ErrBinding.
	ErrBodyTooLarge = errors.New("verify: request body too large")
	// ErrKind means a notice token came where a verified one was expected, or
	// the reverse (typ header or kind claim mismatch).
	ErrKind = errors.New("verify: wrong token kind")
	// ErrNotCompleted means a verified token's payment is not marked
	// completed with a transaction.
	ErrNotCompleted = errors.New("verify: payment not completed")
	// ErrPaymentID means the payment id (sub) is not the expected one, or
	// differs from the embedded payment's identifier.
	ErrPaymentID = errors.New("verify: wrong payment id")
)
