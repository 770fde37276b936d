package piguard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/internal/netstore"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// netlikeServer starts a networked-like storage server for the test and
// returns it with a storage module that talks to it.
func netlikeServer(t *testing.T) (*netstore.Server, certmagic.Storage) {
	srv := netstore.NewServer()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, netstore.NewStorage(hs.URL)
}

// netlikeGuard provisions a guard over storage with the given timeout and
// redeliver_to (none when empty); Pi is never reached.
func netlikeGuard(t *testing.T, storage certmagic.Storage, timeout time.Duration, redeliverTo string) *Handler {
	h := &Handler{
		APIKey: pitest.DefaultAPIKey, APIURL: "http://127.0.0.1:1/v2", SigningKey: unitSigningKey,
		Timeout: caddyDuration(timeout), RedeliverTo: redeliverTo,
	}
	h.logger = zap.NewNop()
	require.NoError(t, h.provision(storage))
	return h
}

// countingApp is an app that counts the deliveries it is sent.
func countingApp(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var delivered atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		delivered.Add(1)
	}))
	t.Cleanup(app.Close)
	return app, &delivered
}

// The redelivery worker's listing of owed deliveries can be older than the
// delivery that removed an owed copy. Clearing such a payment takes no lock:
// on networked storage a client's retry that found the lock held would wait
// a second for it (and with a short timeout be told storage_busy). An owed
// copy that is still there is cleared, under the lock.
func TestClearSettledTakesNoLockForAnOwedCopyAlreadyGone(t *testing.T) {
	srv, storage := netlikeServer(t)
	h := netlikeGuard(t, storage, 2*time.Second, "")
	ctx := t.Context()

	rec := completedRecord(t)
	rec.Delivery.NextAttempt = time.Now().Add(time.Hour)
	require.NoError(t, h.store.Save(ctx, rec))
	rec.Delivery.State = ledger.Delivered
	require.NoError(t, h.store.Save(ctx, rec))
	require.False(t, h.store.OwedWritten(ctx, rec.PaymentID), "a delivery removes the owed copy")

	taken := srv.Stats().Acquired
	h.clearSettled(ctx, rec.PaymentID)
	assert.Equal(t, taken, srv.Stats().Acquired, "no lock for an owed copy already gone")

	// A crash between the two writes left a settled record in owed/ too.
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	require.NoError(t, storage.Store(ctx, h.store.OwedKey(rec.PaymentID), data))
	h.clearSettled(ctx, rec.PaymentID)
	assert.Equal(t, taken+1, srv.Stats().Acquired, "cleared under the lock")
	assert.False(t, h.store.OwedWritten(ctx, rec.PaymentID))
	got, err := h.store.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, ledger.Delivered, got.Delivery.State)
}

// A networked storage whose server stops answering (and a storage module
// with no timeout of its own) must not stop the redelivery worker or the
// reconciler for good: their context is the module's, which never ends while
// the config runs. Each storage call is bounded by the timeout, a pass ends
// at the first call that runs out of it (rather than waiting as long for
// every payment), and the next pass, once storage answers again, delivers
// what is owed and settles what is watched.
func TestBackgroundPassesOutliveStorageThatStopsAnswering(t *testing.T) {
	srv, storage := netlikeServer(t)
	t.Cleanup(srv.Resume) // before the server closes
	app, delivered := countingApp(t)
	const timeout = 300 * time.Millisecond
	h := netlikeGuard(t, storage, timeout, app.URL)
	ctx := t.Context()
	// Enough payments that waiting the timeout for each would take 6 s.
	const n = 20
	for range n {
		rec := completedRecord(t)
		rec.Delivery.NextAttempt = time.Now()
		require.NoError(t, h.store.Save(ctx, rec))
		// As if its approval's entry landed after the completion.
		require.NoError(t, h.store.SaveWatch(ctx, &ledger.WatchEntry{PaymentID: rec.PaymentID, Approved: time.Now()}))
	}
	watched, err := h.store.Watched(ctx)
	require.NoError(t, err)
	require.Len(t, watched, n)

	w := newRedeliverer(h)
	redeliveryPass := func() { w.pass(context.Background()); w.running.Wait() }
	reconcilerPass := func() { h.reconcileOnce(context.Background()) }
	returns := func(within time.Duration, what string, pass func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { defer close(done); pass() }()
		select {
		case <-done:
		case <-time.After(within):
			t.Fatalf("the %s waits too long for a storage that does not answer", what)
		}
	}
	srv.Stall() // nothing answers: not even the listings
	returns(5*time.Second, "redelivery pass", redeliveryPass)
	returns(5*time.Second, "reconciler pass", reconcilerPass)
	srv.Resume()
	srv.Stall("load") // the listings answer, the records do not
	returns(3*time.Second, "redelivery pass", redeliveryPass)
	returns(3*time.Second, "reconciler pass", reconcilerPass)
	srv.Resume()
	assert.Zero(t, delivered.Load())

	for i := 0; i < 20 && delivered.Load() < n; i++ {
		returns(10*time.Second, "redelivery pass", redeliveryPass)
	}
	assert.Equal(t, int32(n), delivered.Load(), "each owed payment is delivered once storage answers again")
	owed, err := h.store.Owed(ctx)
	require.NoError(t, err)
	assert.Empty(t, owed)
	for i := 0; i < 10 && len(watched) > 0; i++ {
		returns(10*time.Second, "reconciler pass", reconcilerPass)
		watched, err = h.store.Watched(ctx)
		require.NoError(t, err)
	}
	assert.Empty(t, watched, "the watched payments, completed, are settled once storage answers again")
}

// hangingStorage is a storage whose server answers every call but never
// the reads (or, with writes, the writes) of one payment's files.
type hangingStorage struct {
	certmagic.Storage
	id     string
	writes bool
}

func (s *hangingStorage) Store(ctx context.Context, key string, value []byte) error {
	if s.writes && s.id != "" && strings.Contains(key, s.id) {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Storage.Store(ctx, key, value)
}

func (s *hangingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if !s.writes && s.id != "" && strings.Contains(key, s.id) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.Storage.Load(ctx, key)
}

// One payment whose record storage never answers for ends each pass that
// reaches it, but holds up only itself: the next pass starts after it, so
// the payments listed after it are still delivered and settled.
func TestOneRecordStorageNeverAnswersForHoldsUpOnlyItself(t *testing.T) {
	_, netlike := netlikeServer(t)
	app, delivered := countingApp(t)
	storage := &hangingStorage{Storage: netlike}
	h := netlikeGuard(t, storage, 300*time.Millisecond, app.URL)
	ctx := t.Context()
	const n = 6
	var ids []string
	for range n {
		rec := completedRecord(t)
		rec.Delivery.NextAttempt = time.Now()
		require.NoError(t, h.store.Save(ctx, rec))
		require.NoError(t, h.store.SaveWatch(ctx, &ledger.WatchEntry{PaymentID: rec.PaymentID, Approved: time.Now()}))
		ids = append(ids, rec.PaymentID)
	}
	storage.id = slices.Min(ids) // the first in every listing's order

	w := newRedeliverer(h)
	for range 4 {
		w.pass(context.Background())
		w.running.Wait()
	}
	assert.Equal(t, int32(n-1), delivered.Load(), "every payment but the one storage does not answer for is delivered")
	for range 3 {
		h.reconcileOnce(context.Background())
	}
	watched, err := h.store.Watched(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{slices.Min(ids)}, watched, "every watched payment but that one is settled")
}

// A record kept in memory (storage refused its write) whose writes storage
// then never answers costs each redelivery pass one timeout, and no more:
// the owed payments that were written are still delivered.
func TestOneUnsavedRecordStorageNeverAnswersForHoldsUpOnlyItself(t *testing.T) {
	_, netlike := netlikeServer(t)
	delivered := map[string]int{}
	var mu sync.Mutex
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			PaymentID string `json:"paymentId"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		delivered[body.PaymentID]++
		mu.Unlock()
	}))
	t.Cleanup(app.Close)
	storage := &hangingStorage{Storage: netlike, writes: true}
	h := netlikeGuard(t, storage, 300*time.Millisecond, app.URL)
	ctx := t.Context()
	const n = 4
	var written []string
	for range n {
		rec := completedRecord(t)
		rec.Delivery.NextAttempt = time.Now().Add(time.Hour) // not due yet
		require.NoError(t, h.store.Save(ctx, rec))
		written = append(written, rec.PaymentID)
	}
	stuck := completedRecord(t)
	stuck.Delivery.NextAttempt = time.Now().Add(time.Hour)
	storage.id = stuck.PaymentID
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	require.Error(t, h.store.Save(sctx, stuck), "storage does not answer its write")
	cancel()
	require.Contains(t, h.store.Unsaved(), stuck.PaymentID, "kept in memory")
	for _, id := range written { // due now
		rec, err := h.store.Load(ctx, id)
		require.NoError(t, err)
		rec.Delivery.NextAttempt = time.Now()
		require.NoError(t, h.store.Save(ctx, rec))
	}

	w := newRedeliverer(h)
	for range 3 {
		w.pass(context.Background())
		w.running.Wait()
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range written {
		assert.Equal(t, 1, delivered[id], "the written owed payment %s is delivered", id)
	}
	assert.Contains(t, h.store.Unsaved(), stuck.PaymentID, "still in memory: storage never took it")
}
