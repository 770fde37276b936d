package netstore

import (
	"context"
	"io/fs"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestStorage(t *testing.T) (*Server, *Storage) {
	srv := NewServer()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	s := NewStorage(hs.URL)
	s.Latency, s.Jitter = 0, 0
	return srv, s
}

// Keys are flat: List filters the index, Exists and Delete see "directories"
// only as prefixes, a missing key is fs.ErrNotExist.
func TestKeysAreAnIndex(t *testing.T) {
	_, s := newTestStorage(t)
	ctx := context.Background()
	for _, k := range []string{"a/owed/1.json", "a/owed/2.json", "a/payments/3.json", "a/payments/x/4.json"} {
		require.NoError(t, s.Store(ctx, k, []byte(k)))
	}
	v, err := s.Load(ctx, "a/owed/1.json")
	require.NoError(t, err)
	assert.Equal(t, "a/owed/1.json", string(v))
	_, err = s.Load(ctx, "a/owed/9.json")
	assert.ErrorIs(t, err, fs.ErrNotExist)

	keys, err := s.List(ctx, "a/owed", false)
	require.NoError(t, err)
	assert.Equal(t, []string{"a/owed/1.json", "a/owed/2.json"}, keys)
	keys, err = s.List(ctx, "a/payments", false)
	require.NoError(t, err)
	assert.Equal(t, []string{"a/payments/3.json", "a/payments/x"}, keys)
	keys, err = s.List(ctx, "a", true)
	require.NoError(t, err)
	assert.Len(t, keys, 4)
	keys, err = s.List(ctx, "a/watch", false)
	require.NoError(t, err)
	assert.Empty(t, keys)

	assert.True(t, s.Exists(ctx, "a/owed"))
	assert.False(t, s.Exists(ctx, "a/ow"))
	info, err := s.Stat(ctx, "a/owed/2.json")
	require.NoError(t, err)
	assert.True(t, info.IsTerminal)
	assert.EqualValues(t, len("a/owed/2.json"), info.Size)

	require.NoError(t, s.Delete(ctx, "a/owed/1.json"))
	require.NoError(t, s.Delete(ctx, "a/owed/1.json"), "deleting a missing key is no error")
	require.NoError(t, s.Delete(ctx, "a/payments"))
	assert.False(t, s.Exists(ctx, "a/payments/x/4.json"))
}

// A held lock is tried again once per LockRetry; a holder that stops
// refreshing (its context ended, as when its process dies) keeps the lock
// until LockTTL has passed.
func TestLocksOutliveTheirHolder(t *testing.T) {
	srv, s := newTestStorage(t)
	s.LockTTL, s.LockRetry = 300*time.Millisecond, 100*time.Millisecond
	ctx := context.Background()

	// A live holder keeps its lock past the TTL.
	require.NoError(t, s.Lock(ctx, "l"))
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := s.Lock(wctx, "l")
	cancel()
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a refreshed lock is still held after its TTL")
	require.NoError(t, s.Unlock(ctx, "l"))
	start := time.Now()
	require.NoError(t, s.Lock(ctx, "l"))
	assert.Less(t, time.Since(start), 50*time.Millisecond, "a free lock is taken at once")
	require.NoError(t, s.Unlock(ctx, "l"))

	// A dead holder's lock stays until it expires.
	dead, die := context.WithCancel(ctx)
	require.NoError(t, s.Lock(dead, "d"))
	die()
	start = time.Now()
	require.NoError(t, s.Lock(ctx, "d"))
	waited := time.Since(start)
	assert.GreaterOrEqual(t, waited, 250*time.Millisecond)
	assert.Less(t, waited, time.Second)
	require.NoError(t, s.Unlock(ctx, "d"))
	require.NoError(t, s.Unlock(ctx, "d"), "each holder unlocks its own: the dead one's first, then the live one's")

	st := srv.Stats()
	assert.Equal(t, 1, st.Expired)
	assert.Equal(t, 2, st.Waits)
	assert.Empty(t, srv.Locks())
}

func TestCaddyfile(t *testing.T) {
	var m Module
	d := caddyfile.NewTestDispenser(`pi_guard_netlike http://x/ {
		latency 2ms
		lock_ttl 3s
	}`)
	require.NoError(t, m.UnmarshalCaddyfile(d))
	s, err := m.CertMagicStorage()
	require.NoError(t, err)
	ns := s.(*Storage)
	assert.Equal(t, "http://x/", ns.URL)
	assert.Equal(t, 2*time.Millisecond, ns.Latency)
	assert.Equal(t, DefaultJitter, ns.Jitter)
	assert.Equal(t, 3*time.Second, ns.LockTTL)
	assert.Equal(t, DefaultLockRetry, ns.LockRetry)
}

// A server that stops answering refreshes must not hold Unlock: each
// refresh waits at most until the next one is due.
func TestUnlockDoesNotWaitForAServerThatStoppedAnswering(t *testing.T) {
	srv, s := newTestStorage(t)
	s.LockTTL = 300 * time.Millisecond
	ctx := context.Background()
	require.NoError(t, s.Lock(ctx, "l"))
	srv.Stall("refresh")
	t.Cleanup(srv.Resume)
	time.Sleep(150 * time.Millisecond) // a refresh (every 100 ms) is held
	done := make(chan error, 1)
	go func() { done <- s.Unlock(ctx, "l") }()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Unlock waits for a refresh the server never answers")
	}
}
