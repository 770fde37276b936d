package ledger

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFileLockerExcludes(t *testing.T) {
	l := newLockFiles(t.TempDir())
	assertExcludes(t, l)
	entries, _ := os.ReadDir(l.dir)
	assert.Empty(t, entries, "every lock file is removed on unlock")
}

// assertExcludes has 20 goroutines take one payment's lock and checks that
// no two ever held it at once.
func assertExcludes(t *testing.T, l pathLocker) {
	t.Helper()
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			unlock, err := l.lock(t.Context(), "pi_guard/x/locks/pay1")
			require.NoError(t, err)
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			inside.Add(-1)
			unlock()
			unlock() // a second call is harmless
		})
	}
	wg.Wait()
	assert.EqualValues(t, 1, maxInside.Load())
}

// A holder that died (its refresher stopped) loses the lock after the ttl,
// and a live holder's lock is refreshed past it.
func TestFileLockerExpiryAndRefresh(t *testing.T) {
	l := newLockFiles(t.TempDir())
	l.ttl = 300 * time.Millisecond
	path := filepath.Join(l.dir, safeName("dead")+".lock")
	require.NoError(t, os.MkdirAll(l.dir, 0o700))
	require.NoError(t, writeLock(path, lockFile{Token: "a-dead-instance", Expires: time.Now().Add(l.ttl)}))
	unlock, err := l.tryLock("dead")
	require.NoError(t, err)
	assert.Nil(t, unlock, "a fresh lock is respected")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	unlock, err = l.lock(ctx, "dead")
	require.NoError(t, err, "a dead holder's lock expires")
	time.Sleep(3 * l.ttl) // refreshed meanwhile
	other, err := l.tryLock("dead")
	require.NoError(t, err)
	assert.Nil(t, other, "a live holder keeps its lock past the ttl")
	unlock()
	other, err = l.tryLock("dead")
	require.NoError(t, err)
	require.NotNil(t, other)
	other()
}

// The certmagic failure mode: an instance took and released a lock, another
// instance took it and died. Nothing may keep the dead instance's lock alive.
func TestFileLockerNeverRefreshesAnotherOwnersLock(t *testing.T) {
	l := newLockFiles(t.TempDir())
	l.ttl = 300 * time.Millisecond
	unlock, err := l.tryLock("pay")
	require.NoError(t, err)
	unlock() // this instance is done with it
	path := filepath.Join(l.dir, safeName("pay")+".lock")
	require.NoError(t, writeLock(path, lockFile{Token: "instance-that-dies", Expires: time.Now().Add(l.ttl)}))
	time.Sleep(2 * l.ttl)
	held, ok := readLock(path)
	require.True(t, ok)
	assert.True(t, time.Now().After(held.Expires), "the dead instance's lock was not refreshed")
	unlock, err = l.tryLock("pay")
	require.NoError(t, err)
	require.NotNil(t, unlock)
	unlock()
}

func TestFileLockerHonoursContextAndHalfWrittenFiles(t *testing.T) {
	l := newLockFiles(t.TempDir())
	unlock, err := l.tryLock("busy")
	require.NoError(t, err)
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = l.lock(ctx, "busy")
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// A half-written lock file is respected while young, removed once old.
	path := filepath.Join(l.dir, safeName("half")+".lock")
	require.NoError(t, os.WriteFile(path, []byte("{\"tok"), 0o600))
	got, err := l.tryLock("half")
	require.NoError(t, err)
	assert.Nil(t, got)
	old := time.Now().Add(-2 * l.ttl)
	require.NoError(t, os.Chtimes(path, old, old))
	got, err = l.tryLock("half")
	require.NoError(t, err)
	require.NotNil(t, got)
	got()
}
