package piguard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

const adminTxID = "7a1d0c4b2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796"

// adminFixture is a live handler (as the admin API sees it) whose
// redeliver_to is a test app answering with appStatus.
type adminFixture struct {
	h         *Handler
	storage   certmagic.Storage
	appStatus atomic.Int32
	appCalls  atomic.Int32
	gotHeader atomic.Bool
}

func newAdminFixture(t *testing.T, redeliver bool) *adminFixture {
	t.Helper()
	f := &adminFixture{}
	f.appStatus.Store(http.StatusInternalServerError)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.appCalls.Add(1)
		f.gotHeader.Store(r.Header.Get("Pi-Payment-Verified") != "")
		w.WriteHeader(int(f.appStatus.Load()))
	}))
	t.Cleanup(app.Close)
	h := &Handler{APIKey: "admin-test-key-" + t.Name(), SigningKey: unitSigningKey, Network: piclient.NetworkTestnet, logger: zap.NewNop()}
	if redeliver {
		h.RedeliverTo = app.URL
	}
	f.storage = testStorage(t)
	require.NoError(t, h.provision(f.storage))
	live.Store(h, struct{}{})
	t.Cleanup(func() { live.Delete(h) })
	f.h = h
	return f
}

// owe stores a completed payment whose delivery is in state.
func (f *adminFixture) owe(t *testing.T, id, state string, attempts int) {
	t.Helper()
	rec := &ledger.Record{PaymentID: id, Phase: phaseComplete, TxID: adminTxID,
		Payment: &piclient.Payment{Identifier: id, Amount: "2.5", Network: piclient.NetworkTestnet,
			Status:      piclient.Status{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true},
			Transaction: &piclient.Transaction{TxID: adminTxID, Verified: true}},
		Request:  &ledger.Request{Method: http.MethodPost, Path: "/payments/complete", Body: []byte(`{"paymentId":"` + id + `","txid":"` + adminTxID + `"}`)},
		Delivery: ledger.Delivery{State: state, Attempts: attempts, LastError: "HTTP 500"}}
	require.NoError(t, f.h.store.Save(context.Background(), rec))
}

// adminCall serves one admin request the way Caddy's admin endpoint does:
// an error is written as {"error": message} with its status.
func adminCall(t *testing.T, method, target, body string) (int, map[string]any, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	w := httptest.NewRecorder()
	h := serveDeliveryAction
	if r.URL.Path == "/pi_guard/deliveries" {
		h = serveDeliveries
	}
	if err := h(w, r); err != nil {
		var ae caddy.APIError
		require.ErrorAs(t, err, &ae)
		return ae.HTTPStatus, map[string]any{"error": ae.Message}, ae.Message
	}
	var m map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &m)
	return w.Code, m, w.Body.String()
}

func TestAdminRetryDeliversAnExhaustedPayment(t *testing.T) {
	f := newAdminFixture(t, true)
	f.owe(t, "pay_exhausted", ledger.Exhausted, 10)

	// The app is still down: the attempt fails, the budget is fresh.
	code, m, _ := adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_exhausted/retry", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "failed", m["result"])
	d := m["delivery"].(map[string]any)
	assert.Equal(t, ledger.Pending, d["state"], "back to pending: the worker goes on")
	assert.EqualValues(t, 1, d["attempts"], "a fresh budget: one attempt used")
	assert.Equal(t, "the app answered HTTP 500", d["last_error"])
	assert.EqualValues(t, 1, f.appCalls.Load())
	assert.True(t, f.gotHeader.Load(), "sent with a verified header")

	// The app is back.
	f.appStatus.Store(http.StatusOK)
	code, m, _ = adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_exhausted/retry", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "delivered", m["result"])
	rec, err := f.h.store.Load(context.Background(), "pay_exhausted")
	require.NoError(t, err)
	assert.Equal(t, ledger.Delivered, rec.Delivery.State)

	// Nothing is owed any more: said clearly, and the app is not called.
	code, _, msg := adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_exhausted/retry", "")
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, msg, "nothing is owed: payment pay_exhausted was delivered")
	assert.EqualValues(t, 2, f.appCalls.Load())
}

func TestAdminRetryWithoutRedeliverTo(t *testing.T) {
	f := newAdminFixture(t, false)
	f.owe(t, "pay_noredeliver", ledger.Exhausted, 3)
	code, _, msg := adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_noredeliver/retry", "")
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, msg, "no redeliver_to")
	assert.Contains(t, msg, "/pi_guard/deliveries/pay_noredeliver/resolve")
	rec, err := f.h.store.Load(context.Background(), "pay_noredeliver")
	require.NoError(t, err)
	assert.Equal(t, ledger.Exhausted, rec.Delivery.State, "unchanged")
}

func TestAdminResolve(t *testing.T) {
	f := newAdminFixture(t, true)
	f.owe(t, "pay_byhand", ledger.Exhausted, 10)

	code, _, msg := adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_byhand/resolve", `{}`)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, msg, "needs a note")
	code, _, _ = adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_byhand/resolve", `{"note":"two\nlines"}`)
	assert.Equal(t, http.StatusBadRequest, code)
	code, _, _ = adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_byhand/resolve", `{"note":"x","extra":1}`)
	assert.Equal(t, http.StatusBadRequest, code)

	code, m, _ := adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_byhand/resolve", `{"note":"order 42 marked paid by hand"}`)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "order 42 marked paid by hand", m["note"])
	assert.Equal(t, ledger.Exhausted, m["previous_state"])
	rec, err := f.h.store.Load(context.Background(), "pay_byhand")
	require.NoError(t, err)
	assert.Equal(t, ledger.Delivered, rec.Delivery.State)
	assert.False(t, rec.Delivery.DeliveredAt.IsZero())
	kept, err := f.storage.Load(context.Background(), f.h.store.Prefix()+"/resolved/pay_byhand.json")
	require.NoError(t, err, "the note is kept beside the records")
	assert.Contains(t, string(kept), "order 42 marked paid by hand")
	assert.Zero(t, f.appCalls.Load(), "resolve never calls the app")

	code, _, msg = adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_byhand/resolve", `{"note":"again"}`)
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, msg, "nothing is owed")

	_, body := listDeliveries(t, "")
	assert.NotContains(t, body, "pay_byhand", "a resolved payment is no longer listed")
}

func listDeliveries(t *testing.T, query string) (int, string) {
	t.Helper()
	code, _, body := adminCall(t, http.MethodGet, "/pi_guard/deliveries"+query, "")
	return code, body
}

func TestAdminListsOwedDeliveries(t *testing.T) {
	f := newAdminFixture(t, true)
	f.owe(t, "pay_pending", ledger.Pending, 1)
	f.owe(t, "pay_gaveup", ledger.Exhausted, 10)
	_, all := listDeliveries(t, "")
	assert.Contains(t, all, "pay_pending")
	assert.Contains(t, all, "pay_gaveup")
	_, ex := listDeliveries(t, "?state=exhausted")
	assert.NotContains(t, ex, "pay_pending")
	assert.Contains(t, ex, "pay_gaveup")
	code, _ := listDeliveries(t, "?state=lost")
	assert.Equal(t, http.StatusBadRequest, code)
}

func TestAdminRefusesBadRequests(t *testing.T) {
	f := newAdminFixture(t, true)
	f.owe(t, "pay_owed", ledger.Exhausted, 10)
	for _, tc := range []struct {
		method, target string
		want           int
		says           string
	}{
		{http.MethodGet, "/pi_guard/deliveries/pay_owed/retry", http.StatusMethodNotAllowed, "POST"},
		{http.MethodDelete, "/pi_guard/deliveries/pay_owed/resolve", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPost, "/pi_guard/deliveries", http.StatusMethodNotAllowed, "GET only"},
		{http.MethodPost, "/pi_guard/deliveries/pay_owed/forget", http.StatusNotFound, "unknown route"},
		{http.MethodPost, "/pi_guard/deliveries/pay_owed", http.StatusNotFound, "unknown route"},
		{http.MethodPost, "/pi_guard/deliveries/pay.owed/retry", http.StatusBadRequest, "not a payment id"},
		{http.MethodPost, "/pi_guard/deliveries/" + strings.Repeat("a", 65) + "/retry", http.StatusBadRequest, "not a payment id"},
		{http.MethodPost, "/pi_guard/deliveries/pay_unknown/retry", http.StatusNotFound, "nothing is owed"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			code, _, msg := adminCall(t, tc.method, tc.target, "")
			assert.Equal(t, tc.want, code)
			assert.Contains(t, msg, tc.says)
		})
	}
	assert.Zero(t, f.appCalls.Load())
}

func TestAdminRetryIsSerialisedWithTheWorker(t *testing.T) {
	f := newAdminFixture(t, true)
	f.appStatus.Store(http.StatusOK)
	f.owe(t, "pay_race", ledger.Exhausted, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			w := newRedeliverer(f.h)
			w.pass(context.Background())
			w.running.Wait()
			time.Sleep(time.Millisecond)
		}
	}()
	code, m, _ := adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_race/retry", "")
	<-done
	if code == http.StatusOK {
		assert.Contains(t, []any{"delivered", "queued"}, m["result"])
	} else {
		assert.Equal(t, http.StatusConflict, code, "the worker delivered it first")
	}
	w := newRedeliverer(f.h)
	w.pass(context.Background())
	w.running.Wait()
	assert.EqualValues(t, 1, f.appCalls.Load(), "delivered once, whoever sent it")
}

// Without redeliver_to, retrying a payment that is not owed says "nothing is
// owed", not "set redeliver_to" (which would send the operator the wrong way).
func TestAdminRetryOfAPaidPaymentSaysNothingIsOwed(t *testing.T) {
	f := newAdminFixture(t, false)
	f.owe(t, "pay_paid", ledger.Delivered, 0)
	code, m, _ := adminCall(t, http.MethodPost, "/pi_guard/deliveries/pay_paid/retry", "")
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, fmt.Sprint(m), "nothing is owed")
}
