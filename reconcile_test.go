package piguard

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// reconcileWorld is a guard with the reconciler's options over a fake Pi and
// an app that records verified requests and notices. Tests drive the
// reconciler by hand (flushWatch, reconcileOnce, redeliverOnce).
type reconcileWorld struct {
	t    *testing.T
	pi   *pitest.Server
	app  *noticeApp
	h    *Handler
	reg  *prometheus.Registry
	logs *observer.ObservedLogs
}

func newReconcileWorld(t *testing.T, mod func(h *Handler)) *reconcileWorld {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	w := &reconcileWorld{t: t, pi: pi, app: newNoticeApp(t)}
	w.h, w.reg, w.logs = w.start(testStorage(t), mod)
	return w
}

// start provisions a guard instance over storage.
func (w *reconcileWorld) start(storage certmagic.Storage, mod func(h *Handler)) (*Handler, *prometheus.Registry, *observer.ObservedLogs) {
	h := &Handler{
		APIKey: pitest.DefaultAPIKey, APIURL: w.pi.URL, Network: piclient.NetworkTestnet, SigningKey: unitSigningKey,
		Timeout: caddyDuration(2 * time.Second), RedeliverTo: w.app.srv.URL, RedeliverBackoff: caddyDuration(20 * time.Millisecond),
		ReconcileAfter: caddyDuration(time.Millisecond), ReconcileGiveUp: caddyDuration(time.Hour),
	}
	if mod != nil {
		mod(h)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	reg := prometheus.NewRegistry()
	var err error
	h.metrics, err = newMetrics(reg)
	require.NoError(w.t, err)
	require.NoError(w.t, h.provision(storage))
	require.NoError(w.t, h.Validate())
	w.t.Cleanup(func() { _ = h.Cleanup() }) // background writes end before the storage goes
	return h, reg, logs
}

// approve approves a new payment through the guard and writes the watch
// list, as the background writer would.
func (w *reconcileWorld) approve() string {
	w.t.Helper()
	p := w.pi.CreatePayment(pitest.NewPayment{Amount: "2.5"})
	status, code := call(w.h, proxyTo(w.app.srv.URL), DefaultApprovePath, map[string]string{"paymentId": p.Identifier})
	require.Equal(w.t, http.StatusOK, status, code)
	w.h.flushWatch(context.Background())
	return p.Identifier
}

// pass runs one reconciler pass once the watched payments are due.
func (w *reconcileWorld) pass() {
	time.Sleep(5 * time.Millisecond)
	w.h.reconcileOnce(context.Background())
}

// passUntilSettled runs passes until id is no longer watched.
func (w *reconcileWorld) passUntilSettled(id string) {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for w.entry(id) != nil {
		require.True(w.t, time.Now().Before(deadline), "payment %s still watched", id)
		time.Sleep(20 * time.Millisecond)
		w.pass()
	}
}

func (w *reconcileWorld) entry(id string) *ledger.WatchEntry {
	e, err := w.h.store.LoadWatch(context.Background(), id)
	require.NoError(w.t, err)
	return e
}

func (w *reconcileWorld) outcome(outcome string) float64 {
	return counterValue(w.t, w.reg, "caddy_pi_guard_reconciled_total", "outcome", outcome)
}

// counterValue reads one sample from a registry (0 when absent).
func counterValue(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
			if label == "" {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// A client that vanished after the wallet signed: the reconciler completes
// the payment at Pi once, records the client's request, and the redelivery
// worker delivers it to the app as verified. The client that comes back
// later gets a replay, with no second Pi /complete.
func TestReconcileCompletesVanishedPayment(t *testing.T) {
	w := newReconcileWorld(t, nil)
	id := w.approve()
	txid, err := w.pi.SubmitTransaction(id)
	require.NoError(t, err)

	w.pass()
	p, _ := w.pi.Payment(id)
	assert.True(t, p.IsCompletedWith(txid), "completed at Pi")
	assert.Equal(t, 1, w.pi.CallsFor(pitest.EndpointComplete, id))
	assert.Nil(t, w.entry(id), "no longer watched")
	assert.Equal(t, 1.0, w.outcome(reconciledCompleted))

	rec, err := w.h.store.Load(context.Background(), id)
	require.NoError(t, err)
	require.True(t, rec.Completed())
	assert.Equal(t, ledger.Pending, rec.Delivery.State)
	assert.False(t, rec.Delivery.NextAttempt.After(time.Now()), "due now")
	assert.Equal(t, http.MethodPost, rec.Request.Method)
	assert.Equal(t, DefaultCompletePath, rec.Request.Path)
	assert.Equal(t, "application/json", rec.Request.Header.Get("Content-Type"))
	assert.JSONEq(t, `{"paymentId":"`+id+`","txid":"`+txid+`"}`, string(rec.Request.Body))

	redeliverPass(w.h)
	got := w.app.verifiedFor(id)
	require.Len(t, got, 1, "delivered to the app without any client request")
	assert.Equal(t, verify.PhaseComplete, got[0].Phase, "exactly as a client's completion")
	assert.Equal(t, txid, got[0].Payment.TxID())
	assert.Equal(t, DefaultCompletePath, got[0].Path)

	logged := w.logs.FilterMessageSnippet("payment reconciled").FilterField(zap.String("outcome", reconciledCompleted)).All()
	require.Len(t, logged, 1)
	assert.Equal(t, phaseReconcile, logged[0].ContextMap()["phase"])

	status, code := call(w.h, proxyTo(w.app.srv.URL), DefaultCompletePath, map[string]string{"paymentId": id, "txid": txid})
	assert.Equal(t, http.StatusOK, status, code)
	assert.Len(t, w.app.verifiedFor(id), 2, "the late client gets the normal replay")
	assert.Equal(t, 1, w.pi.CallsFor(pitest.EndpointComplete, id), "no second Pi /complete")
	assert.Zero(t, w.pi.RedundantCompletes(id))
}

// A payment its client completed is forgotten: approvals completed before
// the batch is written cost no write at all, and a stale entry is dropped
// without asking Pi.
func TestReconcileForgetsCompletedPayments(t *testing.T) {
	w := newReconcileWorld(t, nil)
	next := proxyTo(w.app.srv.URL)
	p := w.pi.CreatePayment(pitest.NewPayment{})
	status, _ := call(w.h, next, DefaultApprovePath, map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status)
	txid, err := w.pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	status, _ = call(w.h, next, DefaultCompletePath, map[string]string{"paymentId": p.Identifier, "txid": txid})
	require.Equal(t, http.StatusOK, status)
	batch, _ := w.h.watched.Take()
	assert.Empty(t, batch, "approved and completed within one batch: nothing to write")

	// Approved, written, then completed: the entry is deleted.
	id := w.approve()
	require.NotNil(t, w.entry(id))
	txid, err = w.pi.SubmitTransaction(id)
	require.NoError(t, err)
	status, _ = call(w.h, next, DefaultCompletePath, map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status)
	w.h.flushWatch(context.Background())
	assert.Nil(t, w.entry(id))

	// A stale entry (written by another instance after the completion).
	now := time.Now().UTC()
	require.NoError(t, w.h.store.SaveWatch(context.Background(), &ledger.WatchEntry{PaymentID: id, Approved: now, NextCheck: now}))
	gets := w.pi.Calls(pitest.EndpointGet)
	w.pass()
	assert.Nil(t, w.entry(id))
	assert.Equal(t, gets, w.pi.Calls(pitest.EndpointGet), "the record decides; Pi is not asked")
	assert.Equal(t, 1.0, w.outcome(reconciledByClient))
	assert.Equal(t, 1, w.pi.CallsFor(pitest.EndpointComplete, id))
}

// Pi shows the payment cancelled: the app gets a cancel notice on the
// cancel route, and the payment is forgotten.
func TestReconcileCancelledPaymentNotifiesApp(t *testing.T) {
	w := newReconcileWorld(t, nil)
	id := w.approve()
	require.NoError(t, w.pi.UserCancel(id))
	w.pass()
	n := w.app.notices(id)
	require.Len(t, n, 1)
	assert.Equal(t, verify.PhaseCancel, n[0].Phase)
	assert.True(t, n[0].Payment.IsCancelled())
	assert.Equal(t, DefaultCancelPath, n[0].Path)
	assert.Nil(t, w.entry(id))
	assert.Equal(t, 1.0, w.outcome(reconciledCancelled))
	assert.Empty(t, w.app.verifiedFor(id))
}

// No transaction: watched with backoff until reconcile_give_up, then the
// app gets a reconcile notice; the payment is cancelled at Pi only with
// reconcile_cancel.
func TestReconcileGivesUpWithoutTransaction(t *testing.T) {
	for _, cancel := range []bool{false, true} {
		t.Run(map[bool]string{false: "left at Pi", true: "reconcile_cancel"}[cancel], func(t *testing.T) {
			w := newReconcileWorld(t, func(h *Handler) {
				h.ReconcileGiveUp = caddyDuration(time.Second)
				h.ReconcileCancel = cancel
			})
			id := w.approve()
			w.pass()
			e := w.entry(id)
			require.NotNil(t, e, "still watched before reconcile_give_up")
			assert.Equal(t, "no_transaction", e.LastSeen)
			assert.Equal(t, 1, e.Checks)
			assert.False(t, e.NextCheck.After(e.Approved.Add(time.Second)), "never checked later than the give-up time")
			assert.Empty(t, w.app.notices(id))

			w.passUntilSettled(id)
			assert.GreaterOrEqual(t, time.Since(e.Approved), time.Second, "given up only after reconcile_give_up")
			n := w.app.notices(id)
			require.Len(t, n, 1)
			p, _ := w.pi.Payment(id)
			if cancel {
				assert.True(t, p.Status.Cancelled, "cancelled at Pi")
				assert.Equal(t, verify.PhaseCancel, n[0].Phase)
				assert.Equal(t, 1.0, w.outcome(reconciledCancelledByGuard))
			} else {
				assert.False(t, p.IsCancelled(), "left as it is at Pi")
				assert.Zero(t, w.pi.Calls(pitest.EndpointCancel))
				assert.Equal(t, verify.PhaseReconcile, n[0].Phase)
				assert.Equal(t, 1.0, w.outcome(reconciledGaveUp))
			}
		})
	}
}

// A transaction Pi has not verified is never completed; it is given up.
func TestReconcileNeverCompletesUnverifiedTransaction(t *testing.T) {
	w := newReconcileWorld(t, func(h *Handler) {
		h.ReconcileGiveUp = caddyDuration(time.Second)
		h.ReconcileCancel = true
	})
	id := w.approve()
	_, err := w.pi.SubmitTransactionWith(id, pitest.Tx{Unverified: true})
	require.NoError(t, err)
	w.pass()
	require.NotNil(t, w.entry(id))
	assert.Equal(t, "unverified", w.entry(id).LastSeen)
	w.passUntilSettled(id)
	assert.Zero(t, w.pi.Calls(pitest.EndpointComplete))
	assert.Zero(t, w.pi.Calls(pitest.EndpointCancel), "never cancelled with a transaction")
	n := w.app.notices(id)
	require.Len(t, n, 1)
	assert.Equal(t, verify.PhaseReconcile, n[0].Phase)
	assert.Empty(t, w.app.verifiedFor(id))
}

// Without redeliver_to the reconciler cannot deliver, so it never completes
// at Pi: it reports the paid payment until it gives up.
func TestReconcileWithoutRedeliverToOnlyReports(t *testing.T) {
	w := newReconcileWorld(t, func(h *Handler) {
		h.RedeliverTo = ""
		h.ReconcileGiveUp = caddyDuration(time.Second)
	})
	id := w.approve()
	_, err := w.pi.SubmitTransaction(id)
	require.NoError(t, err)
	w.pass()
	require.NotNil(t, w.entry(id))
	assert.Equal(t, "paid_not_completed", w.entry(id).LastSeen)
	assert.Equal(t, 1, w.logs.FilterMessageSnippet("set redeliver_to").Len())
	w.passUntilSettled(id)
	assert.Equal(t, 1.0, w.outcome(reconciledUndeliverable))
	assert.Zero(t, w.pi.Calls(pitest.EndpointComplete), "never completed at Pi")
	assert.Equal(t, 1, w.logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessageSnippet("without redeliver_to").Len())
}

// With the blockchain cross-check on, a transaction that does not settle
// the payment is never completed.
func TestReconcileCrossChecksBeforeCompleting(t *testing.T) {
	w := newReconcileWorld(t, nil)
	w.h, w.reg, w.logs = w.start(testStorage(t), func(h *Handler) { h.HorizonURL, h.Wallet = w.pi.HorizonURL, w.pi.Wallet })
	id := w.approve()
	_, err := w.pi.SubmitTransactionWith(id, pitest.Tx{Amount: "0.5"})
	require.NoError(t, err)
	w.pass()
	assert.Nil(t, w.entry(id))
	assert.Zero(t, w.pi.Calls(pitest.EndpointComplete))
	assert.Equal(t, 1.0, w.outcome(reconciledRefused))
	assert.Equal(t, 1, w.logs.FilterField(zap.String("error", "blockchain_mismatch")).Len())
	assert.Empty(t, w.app.verifiedFor(id))

	// Completed at Pi by someone else, with a transaction that does not
	// settle it: not delivered either.
	id = w.approve()
	txid, err := w.pi.SubmitTransactionWith(id, pitest.Tx{Amount: "0.5"})
	require.NoError(t, err)
	c, err := piclient.New(piclient.Options{BaseURL: w.pi.URL, APIKey: pitest.DefaultAPIKey})
	require.NoError(t, err)
	_, err = c.Complete(context.Background(), id, txid)
	require.NoError(t, err)
	w.pass()
	assert.Nil(t, w.entry(id))
	assert.Equal(t, 2.0, w.outcome(reconciledRefused))
	rec, err := w.h.store.Load(context.Background(), id)
	require.NoError(t, err)
	assert.Nil(t, rec, "nothing queued for delivery")
}

// Pi unavailable: the payment stays watched and is checked again later.
func TestReconcileRetriesWhenPiFails(t *testing.T) {
	w := newReconcileWorld(t, nil)
	id := w.approve()
	_, err := w.pi.SubmitTransaction(id)
	require.NoError(t, err)
	w.pi.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 503})
	w.pass()
	e := w.entry(id)
	require.NotNil(t, e)
	assert.Equal(t, "pi_unavailable", e.LastSeen)
	assert.Contains(t, e.LastError, "pi_unavailable")
	assert.Zero(t, w.pi.Calls(pitest.EndpointComplete))
	w.pi.ClearFaults()
	w.passUntilSettled(id)
	assert.Equal(t, 1.0, w.outcome(reconciledCompleted))
}

// Pi completed the payment but the guard has no record (a completion whose
// record was lost): it is recorded and delivered, with no second /complete.
func TestReconcileDeliversCompletionWithoutRecord(t *testing.T) {
	w := newReconcileWorld(t, nil)
	id := w.approve()
	txid, err := w.pi.SubmitTransaction(id)
	require.NoError(t, err)
	c, err := piclient.New(piclient.Options{BaseURL: w.pi.URL, APIKey: pitest.DefaultAPIKey})
	require.NoError(t, err)
	_, err = c.Complete(context.Background(), id, txid)
	require.NoError(t, err)
	w.pass()
	assert.Equal(t, 1.0, w.outcome(reconciledAlreadyCompleted))
	assert.Equal(t, 1, w.pi.CallsFor(pitest.EndpointComplete, id))
	redeliverPass(w.h)
	assert.Len(t, w.app.verifiedFor(id), 1)
}

// A notice the app refuses is sent again, at most redeliver_attempts times.
func TestReconcileNoticeRetries(t *testing.T) {
	w := newReconcileWorld(t, func(h *Handler) { h.RedeliverAttempts = 2 })
	id := w.approve()
	w.app.failRate.Store(100)
	require.NoError(t, w.pi.UserCancel(id))
	w.pass()
	require.NotNil(t, w.entry(id))
	assert.Equal(t, "notice_failed", w.entry(id).LastSeen)
	w.passUntilSettled(id)
	assert.Equal(t, 1.0, w.outcome(reconciledNoticeFailed))
}

// One reconciler at a time over shared storage; the watch list survives a
// restart (the writer flushes when its instance stops).
func TestReconcileOneInstanceAtATimeAndAfterRestart(t *testing.T) {
	w := newReconcileWorld(t, nil)
	storage := testStorage(t)
	a, _, _ := w.start(storage, nil)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.watchFlushLoop(ctx); close(done) }()
	p := w.pi.CreatePayment(pitest.NewPayment{})
	status, _ := call(a, proxyTo(w.app.srv.URL), DefaultApprovePath, map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status)
	stop() // the instance stops before its batch was due
	<-done
	_, err := w.pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)

	b, _, _ := w.start(storage, nil)
	c, _, _ := w.start(storage, nil)
	unlock, ok := b.store.TryLockReconciler(context.Background())
	require.True(t, ok)
	time.Sleep(5 * time.Millisecond)
	c.reconcileOnce(context.Background())
	assert.Zero(t, w.pi.Calls(pitest.EndpointComplete), "c waits while b holds the reconciler lock")
	_, again := c.store.TryLockReconciler(context.Background())
	assert.False(t, again)
	unlock()
	c.reconcileOnce(context.Background())
	assert.Equal(t, 1, w.pi.CallsFor(pitest.EndpointComplete, p.Identifier), "the new instance reconciles the payment approved before the restart")
}

// The watched gauge and the admin listing show what is watched.
func TestReconcileGaugeAndAdminListing(t *testing.T) {
	w := newReconcileWorld(t, func(h *Handler) { h.ReconcileAfter = caddyDuration(time.Minute) })
	id := w.approve()
	w.h.reconcileOnce(context.Background())
	assert.Equal(t, 1.0, counterValue(t, w.reg, "caddy_pi_guard_watched_payments", "", ""))

	live.Store(w.h, struct{}{})
	defer live.Delete(w.h)
	rr := httptest.NewRecorder()
	require.NoError(t, serveWatched(rr, httptest.NewRequest(http.MethodGet, "/pi_guard/watched", nil)))
	var rows []watchedPayment
	require.NoError(t, json.Unmarshal(rr.Body.Bytes(), &rows))
	require.Len(t, rows, 1)
	assert.Equal(t, id, rows[0].PaymentID)
	assert.Equal(t, "2.5", rows[0].Amount)
	assert.WithinDuration(t, rows[0].Approved.Add(time.Minute), rows[0].NextCheck, time.Millisecond)
	assert.Error(t, serveWatched(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/pi_guard/watched", nil)))
}

func TestReconcileBackoff(t *testing.T) {
	h := &Handler{ReconcileAfter: caddyDuration(5 * time.Minute), ReconcileGiveUp: caddyDuration(time.Hour)}
	assert.Equal(t, 5*time.Minute, h.reconcileBackoff(1))
	assert.Equal(t, 10*time.Minute, h.reconcileBackoff(2))
	assert.Equal(t, 15*time.Minute, h.reconcileBackoff(3), "at most a quarter of reconcile_give_up")
	assert.Equal(t, 15*time.Minute, h.reconcileBackoff(50))
	h = &Handler{ReconcileAfter: caddyDuration(time.Second), ReconcileGiveUp: caddyDuration(2 * time.Second)}
	assert.Equal(t, time.Second, h.reconcileBackoff(9), "never below reconcile_after")
}

func TestReconcileOptions(t *testing.T) {
	var h Handler
	require.NoError(t, h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`pi_guard {
		reconcile_after 2m
		reconcile_give_up 30m
		reconcile_cancel
	}`)))
	assert.Equal(t, caddyDuration(2*time.Minute), h.ReconcileAfter)
	assert.Equal(t, caddyDuration(30*time.Minute), h.ReconcileGiveUp)
	assert.True(t, h.ReconcileCancel)

	for input, want := range map[string]string{
		"pi_guard {\n reconcile_after soon\n}":                              "reconcile_after",
		"pi_guard {\n reconcile_give_up -1m\n}":                             "reconcile_give_up",
		"pi_guard {\n reconcile_cancel yes\n}":                              "reconcile_cancel takes no argument",
		"pi_guard {\n reconcile_after 1m\n reconcile_after 2m\n}":           `"reconcile_after" given twice`,
		"pi_guard {\n reconcile_cancel\n reconcile_cancel\n}":               `"reconcile_cancel" given twice`,
		"pi_guard {\n reconcile_give_up 1m\n reconcile_give_up 1m\n}":       `"reconcile_give_up" given twice`,
		"pi_guard {\n reconcile_after\n}":                                   "reconcile_after needs exactly one value",
		"pi_guard {\n reconcile_after 1m 2m\n}":                             "takes exactly one value",
		"pi_guard {\n reconcile_later 1m\n}":                                "reconcile_cancel",
		"pi_guard {\n reconcile_give_up 0s\n}":                              "must be a positive duration",
		"pi_guard {\n reconcile_after 1m\n reconcile_give_up 1m\n bad 1\n}": `unknown subdirective "bad"`,
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		require.Error(t, err, input)
		assert.Contains(t, err.Error(), want, input)
	}

	d := &Handler{APIKey: "k", SigningKey: unitSigningKey, logger: zap.NewNop()}
	require.NoError(t, d.provision(testStorage(t)))
	assert.Equal(t, caddyDuration(DefaultReconcileAfter), d.ReconcileAfter)
	assert.Equal(t, caddyDuration(DefaultReconcileGiveUp), d.ReconcileGiveUp)
	assert.NoError(t, d.Validate())
	d.ReconcileGiveUp = d.ReconcileAfter
	assert.ErrorContains(t, d.Validate(), "reconcile_give_up (5m0s) must be longer than reconcile_after (5m0s)")
	d.ReconcileAfter = -1
	assert.ErrorContains(t, d.Validate(), "must not be negative")
}

// listRacer is file storage whose listing fails the way filepath.Walk does
// when a file is deleted while the directory is read.
type listRacer struct{ *certmagic.FileStorage }

func (l listRacer) List(context.Context, string, bool) ([]string, error) {
	return nil, &fs.PathError{Op: "lstat", Path: "watch/gone.json", Err: fs.ErrNotExist}
}

// A listing that races a deletion is an error, not an empty watch list
// (which would end a pass, zero the gauge, and empty the admin listing).
func TestWatchedIDsListingRace(t *testing.T) {
	w := newReconcileWorld(t, nil)
	fsys := testStorage(t).(*certmagic.FileStorage)
	w.h, w.reg, w.logs = w.start(listRacer{fsys}, nil)
	ids, err := w.h.store.Watched(context.Background())
	assert.NoError(t, err, "never watched anything: the directory does not exist")
	assert.Empty(t, ids)
	w.approve()
	_, err = w.h.store.Watched(context.Background())
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

// redeliverPass runs one pass of the redelivery worker and waits for the
// deliveries it started.
func redeliverPass(h *Handler) {
	rw := newRedeliverer(h)
	rw.pass(context.Background())
	rw.running.Wait()
}

// Pi shows the payment completed with its txid but not the transaction
// verified (another backend completed it, or Pi is wrong): the reconciler
// never delivers it as verified, as the complete route refuses it too.
func TestReconcileNeverDeliversAnUnverifiedCompletion(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	liar := httptest.NewServer(unverifying(pi.Handler()))
	t.Cleanup(liar.Close)
	w := &reconcileWorld{t: t, pi: pi, app: newNoticeApp(t)}
	w.h, w.reg, w.logs = w.start(testStorage(t), func(h *Handler) { h.APIURL = liar.URL + "/v2" })
	id := w.approve()
	txid, err := pi.SubmitTransaction(id)
	require.NoError(t, err)
	c, err := piclient.New(piclient.Options{BaseURL: pi.URL, APIKey: pitest.DefaultAPIKey})
	require.NoError(t, err)
	_, err = c.Complete(context.Background(), id, txid)
	require.NoError(t, err)
	w.pass()
	redeliverPass(w.h)
	assert.Empty(t, w.app.verifiedFor(id), "not delivered as verified")
	assert.NotNil(t, w.entry(id), "still watched")
	assert.Zero(t, w.outcome(reconciledAlreadyCompleted))
}

// Full disk, then a crash: a completion whose record is only in memory
// keeps its watch entry, so that after a restart the reconciler finds the
// payment completed at Pi and records and delivers it.
func TestCompletionKeptInMemoryStaysWatched(t *testing.T) {
	storage := newFaultyStorage(t)
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	w := &reconcileWorld{t: t, pi: pi, app: newNoticeApp(t)}
	w.h, w.reg, w.logs = w.start(storage, nil)
	id := w.approve()
	txid, err := pi.SubmitTransaction(id)
	require.NoError(t, err)
	storage.fail(syscall.ENOSPC)
	status, code := call(w.h, proxyTo(w.app.srv.URL), DefaultCompletePath, map[string]string{"paymentId": id, "txid": txid})
	require.Equal(t, http.StatusOK, status, code)
	w.h.flushWatch(context.Background())
	assert.NotNil(t, w.entry(id), "the record is only in memory: the payment stays watched")

	// The process dies; the disk has room again; a new instance starts.
	storage.fail(nil)
	w.h.store.ForgetUnsaved(id) // what a crash loses
	restarted, _, _ := w.start(storage, nil)
	time.Sleep(5 * time.Millisecond)
	restarted.reconcileOnce(context.Background())
	redeliverPass(restarted)
	rec, err := restarted.store.Load(context.Background(), id)
	require.NoError(t, err)
	require.NotNil(t, rec, "recorded after the restart")
	assert.True(t, rec.Completed())
	assert.Equal(t, 1, pi.CallsFor(pitest.EndpointComplete, id), "never completed twice")
}

// reconcile_cancel without redeliver_to would pass validation and never
// cancel anything: caddy validate refuses it and says what to set.
func TestReconcileCancelNeedsRedeliverTo(t *testing.T) {
	h := &Handler{APIKey: "k", SigningKey: unitSigningKey, ReconcileCancel: true, logger: zap.NewNop()}
	require.NoError(t, h.provision(testStorage(t)))
	err := h.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "reconcile_cancel needs redeliver_to")
	assert.Contains(t, err.Error(), "set redeliver_to to the app's base URL")

	h.RedeliverTo = "http://127.0.0.1:3000"
	assert.NoError(t, h.Validate())
}

// lockContextStorage is a storage module (not file_system: its locks are
// taken with Lock, on a context) that checks, at each unlock of a
// payment's lock, whether the context the lock was taken on still lived: a
// storage module may keep its lock fresh only while it does.
type lockContextStorage struct {
	certmagic.Storage
	mu     sync.Mutex
	held   map[string]context.Context
	lapsed []string
	slow   atomic.Int64 // each Store takes this long (ns)
}

func (s *lockContextStorage) Store(ctx context.Context, key string, value []byte) error {
	time.Sleep(time.Duration(s.slow.Load()))
	return s.Storage.Store(ctx, key, value)
}

func (s *lockContextStorage) Lock(ctx context.Context, name string) error {
	if err := s.Storage.Lock(ctx, name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[name] = ctx
	return nil
}

func (s *lockContextStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	if held, ok := s.held[name]; ok && held.Err() != nil {
		s.lapsed = append(s.lapsed, name)
	}
	delete(s.held, name)
	s.mu.Unlock()
	return s.Storage.Unlock(ctx, name)
}

// The reconciler's work under a payment's lock (reading Pi, completing,
// recording the delivery) can outlast one timeout; the lock must live as
// long as that work, or another instance could take it halfway.
func TestReconcileKeepsThePaymentLockAliveForItsWholeWork(t *testing.T) {
	w := newReconcileWorld(t, nil)
	storage := &lockContextStorage{Storage: testStorage(t), held: map[string]context.Context{}}
	const timeout = 300 * time.Millisecond
	h, _, _ := w.start(storage, func(h *Handler) { h.Timeout = caddyDuration(timeout) })
	p := w.pi.CreatePayment(pitest.NewPayment{Amount: "2.5"})
	status, code := call(h, proxyTo(w.app.srv.URL), DefaultApprovePath, map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status, code)
	h.flushWatch(context.Background())
	txid, err := w.pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)

	// The read and the /complete take half the timeout (they share one),
	// the record's write three quarters of another.
	w.pi.SetLatency(timeout / 4)
	storage.slow.Store(int64(timeout * 3 / 4))
	time.Sleep(5 * time.Millisecond)
	start := time.Now()
	h.reconcileOnce(context.Background())
	w.pi.SetLatency(0)
	storage.slow.Store(0)
	require.Greater(t, time.Since(start), timeout, "the work under the lock outlasted one timeout")
	got, _ := w.pi.Payment(p.Identifier)
	require.True(t, got.IsCompletedWith(txid), "the reconciler completed the payment")
	storage.mu.Lock()
	defer storage.mu.Unlock()
	assert.Empty(t, storage.lapsed, "no lock outlived the context it lives on")
}
