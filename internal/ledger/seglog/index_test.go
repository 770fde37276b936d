package seglog

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIndexKeepsTheHighestVersion(t *testing.T) {
	x := NewIndex()
	_, _, ok := x.Get("p1")
	assert.False(t, ok)

	assert.True(t, x.Put("p1", 1, Loc{Segment: 1, Off: 0, Len: 10}))
	assert.True(t, x.Put("p1", 2, Loc{Segment: 1, Off: 11, Len: 12}), "the delivery, after the completion")
	// Another instance's segment read later holds the completion again: an
	// older version never wins.
	assert.False(t, x.Put("p1", 1, Loc{Segment: 2, Off: 0, Len: 10}))
	loc, v, ok := x.Get("p1")
	require.True(t, ok)
	assert.Equal(t, uint64(2), v)
	assert.Equal(t, Loc{Segment: 1, Off: 11, Len: 12}, loc)

	// A compaction's copy (same version, later segment): the copy is the one
	// kept, so that the compacted segment can go, whichever is read last.
	assert.True(t, x.Put("p1", 2, Loc{Segment: 3, Off: 40, Len: 12}))
	assert.False(t, x.Put("p1", 2, Loc{Segment: 1, Off: 11, Len: 12}), "the original read again after its copy")
	loc, _, _ = x.Get("p1")
	assert.Equal(t, uint32(3), loc.Segment)

	x.Put("p2", 7, Loc{Segment: 3})
	assert.Equal(t, 2, x.Len())
}
