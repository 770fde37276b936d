package seglog

import "sync"

// Loc is where a record is: its segment, as the caller numbers segments, the
// offset of its line and the line's length without its '\n'.
type Loc struct {
	Segment uint32
	Len     uint32
	Off     int64
}

// entry is one payment's current record.
type entry struct {
	version uint64
	loc     Loc
}

// Index keeps, for each payment, where its current record is: the one with
// the highest version. Records of equal version are copies of one record (a
// compaction's copy, or the same line read again): the one in the later
// segment is kept, whatever order they were read in, so that a compacted
// segment can be removed. The caller numbers segments (Loc.Segment) in the
// order of their names, which start with their creation time. It is safe
// for concurrent use.
type Index struct {
	mu sync.RWMutex
	m  map[string]entry
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{m: map[string]entry{}} }

// Put records that payment id has a record of this version at loc, and
// reports whether that is now its current one.
func (x *Index) Put(id string, version uint64, loc Loc) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.m[id]; ok && (e.version > version || e.version == version && e.loc.Segment > loc.Segment) {
		return false
	}
	x.m[id] = entry{version: version, loc: loc}
	return true
}

// Get returns where payment id's current record is, and its version.
func (x *Index) Get(id string) (loc Loc, version uint64, ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.m[id]
	return e.loc, e.version, ok
}

// Len is the number of payments indexed.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.m)
}
