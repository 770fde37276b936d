package ledger

import (
	"context"
	"sync"
)

// KeyedMutex serialises work per payment id inside one process, so that
// concurrent duplicate callbacks for one payment share one Pi conversation
// instead of racing each other.
type KeyedMutex struct {
	mu      sync.Mutex
	entries map[string]*lockEntry
}

type lockEntry struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

func NewKeyedMutex() *KeyedMutex {
	return &KeyedMutex{entries: make(map[string]*lockEntry)}
}

// Lock waits until key is free or ctx is done. On success it returns the
// function that unlocks it.
func (k *KeyedMutex) Lock(ctx context.Context, key string) (func(), error) {
	e := k.enter(key)
	select {
	case e.ch <- struct{}{}:
		return k.unlocker(key, e), nil
	case <-ctx.Done():
		k.release(key, e)
		return nil, ctx.Err()
	}
}

// TryLock takes key if it is free, without waiting. It reports whether it
// did; on success it returns the function that unlocks it.
func (k *KeyedMutex) TryLock(key string) (func(), bool) {
	e := k.enter(key)
	select {
	case e.ch <- struct{}{}:
		return k.unlocker(key, e), true
	default:
		k.release(key, e)
		return nil, false
	}
}

// enter returns key's entry, counting one more user of it.
func (k *KeyedMutex) enter(key string) *lockEntry {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.entries[key]
	if e == nil {
		e = &lockEntry{ch: make(chan struct{}, 1)}
		k.entries[key] = e
	}
	e.refs++
	return e
}

// unlocker is the unlock function of a held entry.
func (k *KeyedMutex) unlocker(key string, e *lockEntry) func() {
	return func() {
		<-e.ch
		k.release(key, e)
	}
}

func (k *KeyedMutex) release(key string, e *lockEntry) {
	k.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(k.entries, key)
	}
	k.mu.Unlock()
}
