package piguard

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// answer is the JSON a guardError writes.
func answer(t *testing.T, ge *guardError) map[string]any {
	t.Helper()
	w := httptest.NewRecorder()
	writeError(w, ge)
	var out map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &out))
	return out
}

func TestPiFailureAnswers(t *testing.T) {
	notAPI := func(status int) error {
		return &piclient.Error{Op: "complete", StatusCode: status, Err: piclient.ErrNotAPIError}
	}
	cases := []struct {
		name      string
		err       error
		status    int
		code      string
		retryable bool
		extra     map[string]any // pi_error, verification_error
	}{
		{"verification_failed", &piclient.Error{Op: "complete", StatusCode: 400, Code: "verification_failed", VerificationError: "tx_memo_payment_identifier_mismatch"},
			http.StatusConflict, "pi_rejected", false, map[string]any{"pi_error": "verification_failed", "verification_error": "tx_memo_payment_identifier_mismatch"}},
		{"payment_tx_present", &piclient.Error{Op: "cancel", StatusCode: 400, Code: "payment_tx_present", Message: "You cannot cancel this payment, because an associated blockchain transaction has been recorded."},
			http.StatusConflict, "pi_rejected", false, map[string]any{"pi_error": "payment_tx_present"}},
		{"JSON 404", &piclient.Error{Op: "get", StatusCode: 404, Code: "payment_not_found"},
			http.StatusNotFound, "payment_not_found", false, map[string]any{"pi_error": "payment_not_found"}},
		// An HTML page, whatever its status, is never Pi's word.
		{"HTML 500", notAPI(500), http.StatusBadGateway, "pi_unavailable", true, nil},
		{"HTML 404", notAPI(404), http.StatusBadGateway, "pi_unavailable", true, nil},
		{"HTML 403", notAPI(403), http.StatusBadGateway, "pi_unavailable", true, nil},
		{"HTML 401", notAPI(401), http.StatusBadGateway, "pi_unavailable", true, nil},
		{"JSON 503", &piclient.Error{Op: "get", StatusCode: 503, Code: "service_unavailable"},
			http.StatusBadGateway, "pi_unavailable", true, map[string]any{"pi_error": "service_unavailable"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ge := piFailure(tc.err, "pay1")
			assert.Equal(t, tc.status, ge.Status)
			assert.Equal(t, tc.code, ge.Code)
			assert.Equal(t, tc.retryable, ge.Retryable)
			got := answer(t, ge)
			for _, k := range []string{"pi_error", "verification_error"} {
				if want, ok := tc.extra[k]; ok {
					assert.Equal(t, want, got[k], k)
				} else {
					assert.NotContains(t, got, k, "omitted when Pi gave none")
				}
			}
			assert.True(t, errors.Is(ge, tc.err) || errors.Is(ge.cause, tc.err))
		})
	}
	ge := piFailure(cases[0].err, "pay1")
	assert.Contains(t, ge.Message, "verification_failed: tx_memo_payment_identifier_mismatch", "the message names the reason")
}

// A completion Pi refuses with verification_failed: the client's answer and
// the log line carry Pi's reason, and the app hears nothing.
func TestVerificationFailedReasonReachesClientAndLog(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)

	p := pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	_, err := h.pi.Approve(t.Context(), p.Identifier)
	require.NoError(t, err)
	txid, err := pi.SubmitTransactionWith(p.Identifier, pitest.Tx{VerificationError: "tx_memo_payment_identifier_mismatch"})
	require.NoError(t, err)

	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/payments/complete", strings.NewReader(`{"paymentId":"`+p.Identifier+`","txid":"`+txid+`"}`))
	r.Header.Set("Content-Type", "application/json")
	next := &nextRecorder{}
	require.NoError(t, h.ServeHTTP(w, r, next))
	assert.False(t, next.called, "nothing reaches the app")
	assert.Equal(t, http.StatusConflict, w.Code)
	var body map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
	assert.Equal(t, "pi_rejected", body["error"])
	assert.Equal(t, "verification_failed", body["pi_error"])
	assert.Equal(t, "tx_memo_payment_identifier_mismatch", body["verification_error"])
	assert.Contains(t, body["message"], "tx_memo_payment_identifier_mismatch")

	entries := logs.FilterMessage("payment refused").All()
	require.Len(t, entries, 1)
	ctx := entries[0].ContextMap()
	assert.Equal(t, "pi_rejected", ctx["error"])
	assert.Contains(t, ctx["cause"], "verification_error tx_memo_payment_identifier_mismatch", "the log keeps Pi's reason")
	assert.NotContains(t, w.Body.String()+ctx["cause"].(string), pi.APIKey)
}

// Pi refuses to cancel a payment cancelled meanwhile (cancelled_payment):
// the incomplete route re-reads it and tells the app it is cancelled.
func TestIncompleteCancelRefusedIsSettledByARead(t *testing.T) {
	pi := pitest.NewServer()
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	h.CancelIncompleteAfter = caddyDuration(time.Millisecond) // stale: anyone may have it cancelled
	p := pi.CreatePayment(pitest.NewPayment{})
	time.Sleep(5 * time.Millisecond)
	pi.InjectFault(pitest.EndpointCancel, pitest.Fault{Delay: 500 * time.Millisecond, Times: 1})
	go func() {
		// The user cancels while the guard's cancel is on its way.
		for deadline := time.Now().Add(5 * time.Second); pi.Calls(pitest.EndpointCancel) == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		_ = pi.UserCancel(p.Identifier)
	}()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/payments/incomplete", strings.NewReader(`{"payment":{"identifier":"`+p.Identifier+`"}}`))
	r.Header.Set("Content-Type", "application/json")
	next := &nextRecorder{}
	require.NoError(t, h.ServeHTTP(w, r, next))
	require.True(t, next.called, "answer %d %s", w.Code, w.Body)
	assert.NotEmpty(t, next.req.Header.Get(h.NoticeHeader), "the app is told, with a notice")
	assert.Empty(t, next.req.Header.Get(h.Header))
	assert.Equal(t, 1, pi.Calls(pitest.EndpointCancel))
}
