package verify

import (
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// Header names and token types.
const (
	// HeaderVerified carries a KindVerified token. The guard sets it only
	// when Pi confirmed that the payment is completed with a transaction.
	HeaderVerified = "Pi-Payment-Verified"
	// HeaderNotice carries a KindNotice token: approval, cancellation, or an
	// incomplete payment without a transaction. It is never proof of payment.
	HeaderNotice = "Pi-Payment-Notice"

	// TypeVerified is the JWT header "typ" of a verified token.
	TypeVerified = "pi-payment-verified+jwt"
	// TypeNotice is the JWT header "typ" of a notice token.
	TypeNotice = "pi-payment-notice+jwt"

	// DefaultIssuer is the default "iss".
	DefaultIssuer = "caddy-pi-guard"
	// DefaultAudience is the default "aud".
	DefaultAudience = "pi-app"
	// DefaultTTL is the default lifetime of a token (exp - iat).
	DefaultTTL = 60 * time.Second
	// DefaultLeeway is the clock skew a verifier allows on exp and iat.
	DefaultLeeway = 30 * time.Second
	// MaxBodyBytes is the default bound on the body a Verifier reads to check
	// its digest.
	MaxBodyBytes = 1 << 20
	// MaxTokenBytes bounds a token's length: a Signer refuses to make a longer
	// one and a Verifier refuses to parse one.
	MaxTokenBytes = 32 << 10
)

// Kind tells a verified token from a notice.
type Kind string

// Token kinds, as in the "kind" claim.
const (
	KindVerified Kind = "verified"
	KindNotice   Kind = "notice"
)

// Phases, as in the "phase" claim: the callback the token was made for.
const (
	PhaseApprove    = "approve"
	PhaseComplete   = "complete"
	PhaseIncomplete = "incomplete"
	PhaseCancel     = "cancel"
	// PhaseReconcile is a notice from the guard's reconciler: it stopped
	// watching an approved payment that still has no verified transaction.
	PhaseReconcile = "reconcile"
)

// Claims is the payload of a token. The signer writes it with appendClaims
// (claimsjson.go), which must follow any change of its fields.
type Claims struct {
	// Issuer ("iss") is the guard's name, DefaultIssuer unless configured.
	Issuer string `json:"iss"`
	// Subject ("sub") is the payment id.
	Subject string `json:"sub"`
	// Audience ("aud") names the app, DefaultAudience unless configured.
	Audience string `json:"aud"`
	// IssuedAt ("iat") and Expiry ("exp") are Unix times in seconds.
	IssuedAt int64 `json:"iat"`
	Expiry   int64 `json:"exp"`
	// ID ("jti") is 128 random bits, base64url: unique per token.
	ID string `json:"jti"`

	// Kind is KindVerified or KindNotice, matching the header "typ".
	Kind Kind `json:"kind"`
	// Phase is PhaseApprove, PhaseComplete, PhaseIncomplete, PhaseCancel or
	// PhaseReconcile (the reconciler's notice).
	Phase string `json:"phase"`
	// Payment is the PaymentDTO exactly as Pi returned it.
	Payment piclient.Payment `json:"payment"`
	// AmountText ("amount_text") is payment.amount as an exact decimal
	// string in canonical form (see AmountText), for apps whose JSON parser
	// reads numbers as binary floats. Tokens from guards before it was added
	// do not carry it.
	AmountText string `json:"amount_text,omitempty"`

	// Method ("htm") and Path ("htu") are the method and URL path of the
	// request as the guard forwarded it.
	Method string `json:"htm"`
	Path   string `json:"htu"`
	// BodySHA256 ("bsh") is the base64url (no padding) SHA-256 of the
	// forwarded body.
	BodySHA256 string `json:"bsh"`
	// UserUID ("uid") is the Pi user authenticated by access token, when the
	// guard binds payments to users.
	UserUID string `json:"uid,omitempty"`
}

// isCompleted reports whether Pi marks p completed with a transaction: the one
// condition for a verified token, checked by both Signer and Verifier.
func isCompleted(p *piclient.Payment) bool {
	return p.Status.DeveloperCompleted && p.Transaction != nil && p.Transaction.TxID != ""
}

func validKind(k Kind) bool { return k == KindVerified || k == KindNotice }

func validPhase(p string) bool {
	switch p {
	case PhaseApprove, PhaseComplete, PhaseIncomplete, PhaseCancel, PhaseReconcile:
		return true
	}
	return false
}

// typeOf returns the JWT "typ" of a kind.
func typeOf(k Kind) string {
	if k == KindVerified {
		return TypeVerified
	}
	return TypeNotice
}
