package piguard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// guardError is a refusal or failure answered to the client as JSON:
// {"error": "<stable code>", "message": "...", "retryable": bool}, plus, when
// Pi's JSON error body said why, "pi_error" (Pi's code) and
// "verification_error" (Pi's reason for verification_failed).
type guardError struct {
	Status            int    `json:"-"`
	Code              string `json:"error"`
	Message           string `json:"message"`
	PaymentID         string `json:"paymentId,omitempty"`
	Retryable         bool   `json:"retryable"`
	PiError           string `json:"pi_error,omitempty"`
	VerificationError string `json:"verification_error,omitempty"`
	cause             error
	// retryAfter, when set, is sent as Retry-After (seconds).
	retryAfter int
}

func (e *guardError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.cause)
	}
	return e.Code + ": " + e.Message
}

func (e *guardError) Unwrap() error { return e.cause }

// asGuardError is errors.As for a *guardError, without allocating its
// target when err is one itself (as nearly always).
func asGuardError(err error) (*guardError, bool) {
	if ge, ok := err.(*guardError); ok && ge != nil {
		return ge, true
	}
	if err == nil {
		return nil, false
	}
	var ge *guardError
	ok := errors.As(err, &ge)
	return ge, ok
}

func refuse(status int, code, format string, args ...any) *guardError {
	return &guardError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// writeError answers the client. It never reaches the upstream.
func writeError(w http.ResponseWriter, e *guardError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if e.Status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}

// piFailure turns a failed Pi call into the answer for the client. Only Pi's
// JSON error body counts as Pi saying no: an HTML page with a 4xx or 5xx
// (Pi's front servers, a proxy) is "Pi unavailable", retryable.
func piFailure(err error, id string) *guardError {
	if ge, ok := asGuardError(err); ok {
		return ge
	}
	var e *guardError
	switch {
	case errors.Is(err, errPiBusy):
		e = refuse(http.StatusServiceUnavailable, "pi_busy", "the guard has too many Pi API calls in flight; retry in a moment")
		e.Retryable, e.retryAfter = true, 1
	case errors.Is(err, context.DeadlineExceeded):
		e = refuse(http.StatusGatewayTimeout, "pi_timeout", "the Pi Platform API did not answer in time; retry the request")
		e.Retryable = true
	case piclient.IsNotFound(err):
		e = refuse(http.StatusNotFound, "payment_not_found", "Pi knows no payment with this id for this app")
	case piclient.IsUnauthorized(err):
		e = refuse(http.StatusBadGateway, "pi_unauthorized", "the Pi Platform API refused the server's API key; the site operator must check pi_guard api_key")
	case piclient.IsRejected(err):
		e = refuse(http.StatusConflict, "pi_rejected", "the Pi Platform API refused the request (%s)", piCode(err))
	default:
		e = refuse(http.StatusBadGateway, "pi_unavailable", "the Pi Platform API could not be reached or gave no usable answer; retry the request")
		e.Retryable = true
	}
	e.cause = err
	e.PaymentID = id
	e.PiError = piclient.ErrorCode(err)
	e.VerificationError = piclient.VerificationError(err)
	return e
}

// piCode names Pi's refusal for a message: its code, with the reason for
// verification_failed, or the HTTP status.
func piCode(err error) string {
	c := piclient.ErrorCode(err)
	if c == "" {
		return fmt.Sprintf("HTTP %d", piclient.StatusCode(err))
	}
	if v := piclient.VerificationError(err); v != "" {
		return c + ": " + v
	}
	return c
}

// storageFailure is the answer when the guard cannot read or lock its own
// records: it fails closed and asks the client to retry.
func storageFailure(err error, id string) *guardError {
	if errors.Is(err, errStorageBusy) {
		e := refuse(http.StatusServiceUnavailable, "storage_busy", "the guard's storage kept this payment locked (another request or instance is working on it); retry in a moment")
		e.Retryable, e.retryAfter, e.cause, e.PaymentID = true, 1, err, id
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return piFailure(err, id)
	}
	e := refuse(http.StatusServiceUnavailable, "storage_unavailable", "the guard could not read its payment records; retry the request")
	e.Retryable = true
	e.cause = err
	e.PaymentID = id
	return e
}
