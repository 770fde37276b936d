// Package verify signs and verifies the headers that caddy-pi-guard adds to
// the payment callbacks it forwards to a Pi Network app.
//
// The guard calls the Pi Platform API itself. When Pi confirms that a payment
// is completed (status.developer_completed with a blockchain transaction), the
// guard forwards the app's callback request with a Pi-Payment-Verified header
// holding a signed JWT. Other forwarded callbacks (approval, cancellation, an
// incomplete payment without a transaction) carry a Pi-Payment-Notice header
// instead, which is never proof of payment.
//
// The rule for an app is simple:
//
//	a valid Pi-Payment-Verified header ⇒ paid
//	anything else (a notice, no header, an invalid header) ⇒ not paid
//
// Both headers are compact JWS (JWT) tokens signed with HS256 (a shared secret
// of at least 32 bytes) or EdDSA (Ed25519, public keys publishable as a JWK
// Set). They are bound to the forwarded request: its method, URL path and the
// SHA-256 of its body, so a token cannot be replayed onto another request.
//
// The guard signs with [Signer]; an app verifies with [Verifier], most simply
// by wrapping its completion handler in [Middleware]:
//
//	v, err := verify.NewVerifier(verify.Options{Keys: []verify.Key{key}})
//	...
//	mux.Handle("POST /payments/complete", verify.Middleware(v, completeHandler))
//
// and reading the claims with [FromContext]. Payments can be delivered more
// than once, so an app must record a payment id idempotently.
//
// This package depends only on the standard library, go-jose and the piclient
// package: an upstream app can import it without Caddy. The header format is
// specified in docs/header.md of the repository, and examples/ holds verifiers
// in Go, Node and Python.
package verify
