package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tryLockStorage is a storage module with a try-lock of its own (the
// certmagic.TryLocker interface), answering as try says.
type tryLockStorage struct {
	certmagic.Storage
	try      func(ctx context.Context, name string) (bool, error)
	unlocked chan string
}

func (s *tryLockStorage) TryLock(ctx context.Context, name string) (bool, error) {
	return s.try(ctx, name)
}

func (s *tryLockStorage) Unlock(_ context.Context, name string) error {
	s.unlocked <- name
	return nil
}

// A storage whose try-lock never answers (its server stopped answering,
// and the module has no timeout of its own) holds a background caller,
// whose context never ends, for one bounded wait, not for ever.
func TestTryLockWaitsForAStorageThatDoesNotAnswerAtMostItsBound(t *testing.T) {
	defer func(d time.Duration) { tryLockAnswer = d }(tryLockAnswer)
	tryLockAnswer = 100 * time.Millisecond
	s := &tryLockStorage{Storage: testStorage(t), unlocked: make(chan string, 1),
		try: func(ctx context.Context, _ string) (bool, error) {
			<-ctx.Done()
			return false, ctx.Err()
		}}
	st := New(s, "pi_guard/test")
	returned := make(chan bool)
	go func() {
		_, ok := st.TryLock(context.Background(), benchID, time.Hour)
		returned <- ok
	}()
	select {
	case ok := <-returned:
		assert.False(t, ok)
	case <-time.After(5 * time.Second):
		t.Fatal("TryLock waits for a storage that does not answer, with no end")
	}
	_, ok := st.TryLockReconciler(context.Background())
	assert.False(t, ok)
}

// A try-lock that answers keeps its context alive until unlock (a storage
// module may keep its lock fresh only while it lives), and a busy one
// answers false at once.
func TestTryLockHoldsItsContextUntilUnlock(t *testing.T) {
	defer func(d time.Duration) { tryLockAnswer = d }(tryLockAnswer)
	tryLockAnswer = 50 * time.Millisecond
	var held context.Context
	busy := false
	s := &tryLockStorage{Storage: testStorage(t), unlocked: make(chan string, 1),
		try: func(ctx context.Context, _ string) (bool, error) {
			if busy {
				return false, nil
			}
			held, busy = ctx, true
			return true, nil
		}}
	st := New(s, "pi_guard/test")
	unlock, ok := st.TryLock(context.Background(), benchID, 0)
	require.True(t, ok)
	_, ok = st.TryLock(context.Background(), benchID, 0)
	assert.False(t, ok, "held")
	time.Sleep(3 * tryLockAnswer)
	require.NoError(t, held.Err(), "the lock's context lives while it is held, past the wait for the answer")
	unlock()
	assert.Equal(t, st.lockName(benchID), <-s.unlocked)
	assert.Error(t, held.Err(), "and ends at unlock")
}
