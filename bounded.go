package piguard

import "sync"

// boundedMap is a map of at most max entries that, when full, forgets its
// oldest entry to make room for a new one: one by one, so that a flood of
// new keys never wipes what the guard knows of everyone else at once.
type boundedMap[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	items map[K]V
	order []K // insertion order; may hold keys already deleted
}

func newBoundedMap[K comparable, V any](max int) *boundedMap[K, V] {
	return &boundedMap[K, V]{max: max, items: make(map[K]V)}
}

// get returns the value of k.
func (m *boundedMap[K, V]) get(k K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.items[k]
	return v, ok
}

// put sets k to v, forgetting the oldest entries while the map is full.
func (m *boundedMap[K, V]) put(k K, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.items[k]; !ok {
		for len(m.items) >= m.max && len(m.order) > 0 {
			delete(m.items, m.order[0])
			m.order = m.order[1:]
		}
		m.order = append(m.order, k)
	}
	m.items[k] = v
	if len(m.order) > 2*m.max { // deleted keys pile up: compact
		live := m.order[:0]
		for _, key := range m.order {
			if _, ok := m.items[key]; ok {
				live = append(live, key)
			}
		}
		m.order = live
	}
}

// remove forgets k.
func (m *boundedMap[K, V]) remove(k K) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.items, k)
}

// len returns the number of entries.
func (m *boundedMap[K, V]) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}
