package piclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Error is returned by every Client call that did not produce a value.
type Error struct {
	// Op is the call: "get", "approve", "complete", "cancel", "incomplete" or "me".
	Op string
	// PaymentID is the payment the call was about, when there is one.
	PaymentID string
	// StatusCode is the HTTP status Pi answered with, or 0 when no answer came.
	StatusCode int
	// Code and Message are Pi's error code and message, when its body had them.
	Code    string
	Message string
	// VerificationError is Pi's reason when Code is "verification_failed",
	// such as "tx_memo_payment_identifier_mismatch" (Pi sends it instead of
	// an error_message).
	VerificationError string
	// Payment is the payment Pi sent beside some refusals (for example a
	// cancel refused with "already_completed"), when it decoded. It is for
	// information: act on a fresh GetPayment, not on it.
	Payment *Payment
	// RetryAfter is Pi's Retry-After, when it sent one.
	RetryAfter time.Duration
	// Err is the underlying cause (transport error, decoding error), if any.
	Err error
}

// Error describes the failure without ever including the API key. (Text that
// came from Pi, such as Message, has the key removed when the Error is made,
// in case Pi or something in between echoed it back.)
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("pi api ")
	b.WriteString(e.Op)
	if e.PaymentID != "" {
		b.WriteString(" payment ")
		b.WriteString(e.PaymentID)
	}
	switch {
	case e.StatusCode != 0:
		fmt.Fprintf(&b, ": HTTP %d", e.StatusCode)
		if e.Code != "" {
			fmt.Fprintf(&b, " %s", e.Code)
		}
		if e.VerificationError != "" {
			fmt.Fprintf(&b, " (verification_error %s)", e.VerificationError)
		}
		if e.Message != "" {
			fmt.Fprintf(&b, ": %s", truncate(e.Message, 200))
		}
		if e.Err != nil {
			fmt.Fprintf(&b, ": %v", e.Err)
		}
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	default:
		b.WriteString(": failed")
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Rejected reports whether Pi answered and refused the call: a 4xx other than
// 408 Request Timeout and 429 Too Many Requests, with Pi's JSON error body
// ({"error": "<code>", ...}). Repeating the call will not help. A 4xx with any
// other body (a proxy's or firewall's HTML page) is not Pi's word: Err is then
// ErrNotAPIError and the call counts as unavailable.
func (e *Error) Rejected() bool {
	return e.StatusCode >= 400 && e.StatusCode < 500 &&
		e.StatusCode != http.StatusRequestTimeout && e.StatusCode != http.StatusTooManyRequests &&
		e.Err == nil
}

// Unavailable reports whether no trustworthy answer was had: a network
// failure, a timeout, a 5xx, 408, 429, an error status without Pi's JSON
// error body, or a body that could not be decoded.
// It is false for a rejection and for a validation error (no call was made),
// as IsUnavailable is.
func (e *Error) Unavailable() bool { return !e.Rejected() && !IsInvalid(e.Err) }

// IsRejected reports whether err is an *Error for which Pi said no.
func IsRejected(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Rejected()
}

// IsUnavailable reports whether err is a failure to get a trustworthy answer
// from Pi (any error that is not a rejection, including ones not of type *Error,
// such as a cancelled context).
func IsUnavailable(err error) bool {
	return err != nil && !IsRejected(err) && !IsInvalid(err)
}

// IsInvalid reports whether err is a validation error raised before any call:
// a malformed payment id, txid or access token.
func IsInvalid(err error) bool {
	return errors.Is(err, ErrInvalidPaymentID) || errors.Is(err, ErrInvalidTxID) || errors.Is(err, ErrInvalidToken)
}

// IsNotFound reports whether Pi answered 404 with its JSON error body: the
// payment does not exist, or belongs to another app. An HTML 404 (from a
// proxy, say) is not Pi's answer and is not IsNotFound.
func IsNotFound(err error) bool { return hasStatus(err, http.StatusNotFound) }

// IsUnauthorized reports whether Pi answered 401 with its JSON error body: a
// wrong API key, or (for Me) an invalid or expired access token.
func IsUnauthorized(err error) bool { return hasStatus(err, http.StatusUnauthorized) }

// StatusCode returns the HTTP status Pi answered with, or 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// ErrorCode returns Pi's error code (for example "already_completed"), or "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// VerificationError returns the reason Pi gave for "verification_failed"
// (its verification_error field), or "".
func VerificationError(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.VerificationError
	}
	return ""
}

func hasStatus(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == code && e.Err == nil
}

// ErrNotAPIError is the cause (Error.Err) of an error status whose body is
// not Pi's JSON error body: an HTML page from Pi's front servers ("We're
// sorry, but something went wrong (500)") or from a proxy or firewall. Such
// an answer says nothing about the payment, so the call is unavailable, never
// rejected.
var ErrNotAPIError = errors.New("the answer is not a Pi API error body")

// apiError is what an error body from Pi says. Pi's bodies are
// {"error": "<code>", "error_message": "<text>"}; "verification_failed"
// comes with "verification_error" and without error_message; some cancel
// refusals carry the payment beside the code.
type apiError struct {
	Code, Message, VerificationError string
	Payment                          *Payment
}

// Bounds on the text kept from an error body.
const (
	maxCodeLength    = 100
	maxMessageLength = 1000
)

// parseErrorBody decodes an error body. It reports false unless data is a
// JSON object whose "error" is a non-empty string: only such a body is Pi
// saying no. Other fields are kept when they have the expected type and
// ignored otherwise. Every text has secret removed.
func parseErrorBody(data []byte, secret string) (apiError, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil || fields == nil {
		return apiError{}, false
	}
	text := func(name string, limit int) string {
		var s string
		if raw, ok := fields[name]; !ok || json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return truncate(redact(s, secret), limit)
	}
	e := apiError{
		Code:              text("error", maxCodeLength),
		Message:           text("error_message", maxMessageLength),
		VerificationError: text("verification_error", maxCodeLength),
	}
	if e.Code == "" {
		return apiError{}, false
	}
	if e.Message == "" {
		e.Message = text("message", maxMessageLength)
	}
	if raw, ok := fields["payment"]; ok {
		var p Payment
		if json.Unmarshal(raw, &p) == nil && p.Identifier != "" {
			e.Payment = &p
		}
	}
	return e, true
}

// notAPIError explains an error status without Pi's JSON error body.
func notAPIError(contentType string) error {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "" {
		mt = "no content type"
	}
	return fmt.Errorf("%w (%s): a front server or proxy answered, not Pi's API; retry later", ErrNotAPIError, truncate(mt, 60))
}

// redactMin is the shortest run of a secret's characters that redact removes
// when it finds only part of the secret (for example cut short by truncate).
const redactMin = 12

// redact removes secret from s: every whole occurrence, and every run of at
// least redactMin bytes that is part of the secret.
func redact(s, secret string) string {
	const mark = "[redacted]"
	if secret == "" {
		return s
	}
	s = strings.ReplaceAll(s, secret, mark)
	if len(secret) < redactMin {
		return s
	}
	for {
		found := false
		for i := 0; i+redactMin <= len(secret) && !found; i++ {
			j := strings.Index(s, secret[i:i+redactMin])
			if j < 0 {
				continue
			}
			k := redactMin
			for i+k < len(secret) && j+k < len(s) && s[j+k] == secret[i+k] {
				k++
			}
			s = s[:j] + mark + s[j+k:]
			found = true
		}
		if !found {
			return s
		}
	}
}

// redactedError is an error whose text had a secret removed.
type redactedError struct {
	msg string
	err error
}

func (r *redactedError) Error() string { return r.msg }
func (r *redactedError) Unwrap() error { return r.err }

// redactErr returns err, or err wrapped so that its text lacks secret.
func redactErr(err error, secret string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := redact(msg, secret); red != msg {
		return &redactedError{msg: red, err: err}
	}
	return err
}
