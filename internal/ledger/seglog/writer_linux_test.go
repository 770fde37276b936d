package seglog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestWriterPreallocatesAndLocksItsSegment(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	require.NoError(t, err)
	if err := unix.Fallocate(int(probe.Fd()), 0, 0, 4096); err != nil {
		t.Skipf("this file system cannot preallocate: %v", err)
	}
	probe.Close()
	w := NewWriter(dir)
	at, err := w.Append(context.Background(), []byte("one"), true)
	require.NoError(t, err)
	name := filepath.Join(dir, at.Segment)
	fi, err := os.Stat(name)
	require.NoError(t, err)
	assert.Equal(t, int64(preallocStep), fi.Size(), "space reserved ahead of the writes")

	// Past the first step: reserved again, a step at a time.
	_, err = w.Append(context.Background(), []byte(strings.Repeat("x", preallocStep-2)), false)
	require.NoError(t, err)
	fi, err = os.Stat(name)
	require.NoError(t, err)
	assert.Equal(t, int64(2*preallocStep), fi.Size())

	f, err := os.Open(name)
	require.NoError(t, err)
	defer f.Close()
	lines, _, err := NewTail(f, 0).Read()
	require.NoError(t, err)
	require.Len(t, lines, 2, "the reserved tail reads as nothing written")
	assert.Equal(t, "one", string(lines[0]))

	// A live writer holds its segment's lock; closing drops it.
	assert.ErrorIs(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
	require.NoError(t, w.Close())
	assert.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB))
}

// unlocked reports whether nobody holds name's lock.
func unlocked(t *testing.T, name string) bool {
	t.Helper()
	f, err := os.Open(name)
	require.NoError(t, err)
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// TestWriterSaysWhenItsSegmentIsGone: a durable line written into a segment
// whose folder was removed is reported lost (ErrSegmentGone), not
// acknowledged; the generation file grows with every segment made.
func TestWriterSaysWhenItsSegmentIsGone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	w := NewWriter(dir)
	defer w.Close()
	_, err := w.Append(context.Background(), []byte("first"), true)
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, GenName))
	require.NoError(t, err)
	assert.Equal(t, int64(1), fi.Size(), "one segment made")

	require.NoError(t, os.RemoveAll(dir))
	_, err = w.Append(context.Background(), []byte("second"), true)
	assert.ErrorIs(t, err, ErrSegmentGone)
	w2 := NewWriter(dir)
	defer w2.Close()
	_, err = w2.Append(context.Background(), []byte("second"), true)
	require.NoError(t, err, "a new writer makes the folder again")
}
