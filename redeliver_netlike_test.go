package piguard

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/internal/netstore"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// The redelivery worker's listing of owed deliveries can be older than the
// delivery that removed an owed copy. Clearing such a payment takes no lock:
// on networked storage a client's retry that found the lock held would wait
// a second for it (and with a short timeout be told storage_busy). An owed
// copy that is still there is cleared, under the lock.
func TestClearSettledTakesNoLockForAnOwedCopyAlreadyGone(t *testing.T) {
	srv := netstore.NewServer()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	storage := netstore.NewStorage(hs.URL)
	h := &Handler{
		APIKey: pitest.DefaultAPIKey, APIURL: "http://127.0.0.1:1/v2", SigningKey: unitSigningKey,
		Timeout: caddyDuration(2 * time.Second),
	}
	h.logger = zap.NewNop()
	require.NoError(t, h.provision(storage))
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
