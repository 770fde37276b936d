package seglog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// preallocated makes a segment of size zero bytes, as a writer's
// fallocate leaves it, and returns it opened for writing and for reading.
func preallocated(t *testing.T, size int64) (w, r *os.File) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "1.seg")
	w, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	require.NoError(t, w.Truncate(size))
	r, err = os.Open(name)
	require.NoError(t, err)
	t.Cleanup(func() { w.Close(); r.Close() })
	return w, r
}

func TestTailReadsWhatIsWrittenWhileItIsWritten(t *testing.T) {
	w, r := preallocated(t, 8<<20)
	const lines = 20000
	var want []string
	for i := range lines {
		// Lines of varied length, some longer than the tail's first buffer.
		pad := strings.Repeat("x", (i*37)%300)
		if i%5000 == 1 {
			pad = strings.Repeat("y", 40<<10)
		}
		want = append(want, fmt.Sprintf(`{"id":%d,"pad":"%s"}`, i, pad))
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// Each line in two writes, so that a read can land between them.
		off := int64(0)
		for _, l := range want {
			b := []byte(l + "\n")
			half := len(b) / 2
			_, err := w.WriteAt(b[:half], off)
			assert.NoError(t, err)
			_, err = w.WriteAt(b[half:], off+int64(half))
			assert.NoError(t, err)
			off += int64(len(b))
		}
	})
	tail := NewTail(r, 0)
	var got []string
	var offs []int64
	deadline := time.Now().Add(time.Minute)
	for len(got) < lines {
		require.True(t, time.Now().Before(deadline), "read %d of %d lines in a minute", len(got), lines)
		ls, at, err := tail.Read()
		require.NoError(t, err)
		for _, l := range ls {
			got = append(got, string(l))
		}
		offs = append(offs, at...)
	}
	wg.Wait()
	require.Equal(t, want, got, "every line once, whole, in order")
	// Each offset is where its line is in the file.
	for _, i := range []int{0, 1, 777, lines - 1} {
		b := make([]byte, len(want[i]))
		_, err := r.ReadAt(b, offs[i])
		require.NoError(t, err)
		assert.Equal(t, want[i], string(b))
	}
	ls, _, err := tail.Read()
	require.NoError(t, err)
	assert.Empty(t, ls, "nothing new")
	off := tail.Offset()

	// Another reader that starts where this one stopped sees the next line
	// only.
	_, err = w.WriteAt([]byte("late\n"), off)
	require.NoError(t, err)
	ls, _, err = NewTail(r, off).Read()
	require.NoError(t, err)
	assert.Equal(t, []string{"late"}, strs(ls))
}

func TestTailStopsAtALineLongerThanAnyRecord(t *testing.T) {
	const max = 1 << 20 // MaxLine, lowered: the test writes one line longer
	w, r := preallocated(t, 2*max)
	_, err := w.WriteAt(append([]byte("ok\n"), bytes.Repeat([]byte("z"), max+10)...), 0)
	require.NoError(t, err)
	tail := NewTail(r, 0)
	tail.max = max
	ls, _, err := tail.Read()
	require.NoError(t, err, "what came before is returned first, without the error")
	assert.Equal(t, []string{"ok"}, strs(ls))
	ls, _, err = tail.Read()
	assert.Empty(t, ls)
	assert.ErrorIs(t, err, ErrLineTooLong)
	assert.Equal(t, int64(3), tail.Offset())
}

func TestTailOfAFileThatIsNotPreallocated(t *testing.T) {
	w, r := preallocated(t, 0)
	_, err := w.Write([]byte("a\nb"))
	require.NoError(t, err)
	tail := NewTail(r, 0)
	ls, _, err := tail.Read()
	require.NoError(t, err)
	assert.Equal(t, []string{"a"}, strs(ls))
	_, err = w.Write([]byte("\n"))
	require.NoError(t, err)
	ls, _, err = tail.Read()
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, strs(ls))
}
