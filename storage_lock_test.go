package piguard

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/internal/netstore"
)

// lockTestTTL is the netlike storage's lock TTL in these tests: a lock not
// refreshed for that long is free again.
const lockTestTTL = 300 * time.Millisecond

// netlikeForLocks is a netlike storage whose locks expire lockTestTTL after
// their last refresh and are tried every 50 ms; like any storage module, it
// may keep a lock fresh only while the context it was taken with lives.
func netlikeForLocks(t *testing.T) *ledger.Ledger {
	hs := httptest.NewServer(netstore.NewServer())
	t.Cleanup(hs.Close)
	ns := netstore.NewStorage(hs.URL)
	ns.Latency, ns.Jitter, ns.LockTTL, ns.LockRetry = 0, 0, lockTestTTL, 50*time.Millisecond
	return ledger.New(ns, "pi_guard/test")
}

// A payment lock the redelivery worker took with tryLock, on a storage
// without TryLock, stays held until it is unlocked, however long the
// delivery takes: the wait for it must not end the context the lock lives on.
func TestTryLockHoldsUntilUnlockOnStorageWithoutTryLock(t *testing.T) {
	st := netlikeForLocks(t)
	ctx := context.Background()
	unlock, ok := st.TryLock(ctx, "p1", 200*time.Millisecond)
	require.True(t, ok)
	time.Sleep(3 * lockTestTTL) // a redelivery to a slow app
	if again, ok := st.TryLock(ctx, "p1", 200*time.Millisecond); ok {
		again()
		t.Fatal("the lock expired while its holder still held it: another worker could redeliver the payment at the same time")
	}
	unlock()
	again, ok := st.TryLock(ctx, "p1", 200*time.Millisecond)
	assert.True(t, ok, "free once unlocked")
	if ok {
		again()
	}
}

// Likewise the reconciler's lock: one instance reconciles at a time, however
// long its pass takes.
func TestReconcilerLockHoldsUntilUnlockOnStorageWithoutTryLock(t *testing.T) {
	h := &Handler{store: netlikeForLocks(t)}
	ctx := context.Background()
	unlock, ok := h.store.TryLockReconciler(ctx)
	require.True(t, ok)
	time.Sleep(3 * lockTestTTL)
	if again, ok := h.store.TryLockReconciler(ctx); ok {
		again()
		t.Fatal("the reconciler lock expired while its holder still held it: two instances could reconcile at once")
	}
	unlock()
	again, ok := h.store.TryLockReconciler(ctx)
	assert.True(t, ok, "free once unlocked")
	if ok {
		again()
	}
}
