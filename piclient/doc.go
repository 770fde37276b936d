// Package piclient is a typed client for the Pi Platform API v2, the server-side
// API that a Pi app calls with its server API key to approve, complete, cancel
// and read payments.
//
// It knows nothing of Caddy: the caddy-pi-guard module uses it, and so can any
// Go program.
//
// # Errors
//
// Every call returns either a value or an *Error. An *Error tells a caller which
// of two situations it is in:
//
//   - Pi answered and said no (a 4xx other than 408 and 429): IsRejected is true.
//     Repeating the same call will get the same answer.
//   - No trustworthy answer was had (connection failure, timeout, 5xx, 408, 429,
//     a redirect, which is never followed, or a malformed, truncated or
//     oversized body): IsUnavailable is true. The call may or may
//     not have taken effect at Pi; for the POST calls, re-read the payment with
//     GetPayment to learn the truth before acting.
//
// # Retries
//
// Reads (GetPayment, IncompleteServerPayments, Me) are retried with exponential
// backoff and full jitter when no trustworthy answer was had, honouring
// Retry-After. State-changing POSTs (Approve, Complete, Cancel) are retried only
// when the request certainly did not reach Pi (it was never written to a
// connection) or when Pi refused it with 429 before acting on it; every other
// failure is returned at once so that the caller re-reads the payment.
//
// # Amounts
//
// Amounts are kept as their exact decimal text (type Amount) and compared as
// rational numbers, never as float64. An amount must be a JSON number (or a
// JSON string holding one) of at most 100 characters with an exponent of at
// most 1000.
//
// # Secrets
//
// The API key is never part of an error, a log line or a String() result. Text
// that came from Pi (an error message, say) has the key, or the access token
// for Me, removed should Pi or a proxy echo it back.
package piclient
