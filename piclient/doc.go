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
//   - Pi answered and said no: a 4xx other than 408 and 429, with Pi's JSON
//     error body {"error": "<code>", ...}. IsRejected is true; ErrorCode,
//     and for "verification_failed" VerificationError (Pi's reason, sent
//     instead of an error_message), say why. Repeating the same call will get
//     the same answer.
//   - No trustworthy answer was had (connection failure, timeout, 5xx, 408, 429,
//     a redirect, which is never followed, a malformed, truncated or
//     oversized body, or any error status without Pi's JSON error body, such
//     as Pi's HTML "We're sorry, but something went wrong (500)" or a proxy's
//     HTML 403 or 404: ErrNotAPIError): IsUnavailable is true. The call may
//     or may not have taken effect at Pi; for the POST calls, re-read the
//     payment with GetPayment to learn the truth before acting.
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
// # Timeouts
//
// Each HTTP attempt is bounded by Options.Timeout, DefaultTimeout (10 s) by
// default. Pi's own SDKs allow a call 20 s, but the Pi wallet gives up on a
// payment step after about 60 s: a shorter bound leaves time, within the
// caller's deadline, for the re-read that settles a lost POST and for a
// retry by the user's client.
//
// # Transaction ids
//
// ValidateTxID accepts 64 hexadecimal digits in either case; Pi and Horizon
// write them in lower case and compare them exactly. Complete sends the txid
// in lower case, and Payment.TxID and IsCompletedWith compare in lower case
// (NormalizeTxID).
//
// # Amounts
//
// Amounts are kept as their exact decimal text (type Amount) and compared as
// rational numbers, never as float64. Pi writes them as floats (1.0, 0.42,
// 1e-05); "1.0" stays "1.0" and equals "1". An amount must be a JSON number (or a
// JSON string holding one) of at most 100 characters with an exponent of at
// most 1000.
//
// # Secrets
//
// The API key is never part of an error, a log line or a String() result. Text
// that came from Pi (an error message, say) has the key, or the access token
// for Me, removed should Pi or a proxy echo it back.
package piclient
