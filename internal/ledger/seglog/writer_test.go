package seglog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// segments reads every segment in dir with a Tail and returns its lines by
// where they are.
func segments(t *testing.T, dir string) (map[At]string, []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	got := map[At]string{}
	var names []string
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".seg" {
			continue
		}
		names = append(names, e.Name())
		f, err := os.Open(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		lines, offs, err := NewTail(f, 0).Read()
		f.Close()
		require.NoError(t, err)
		for i, l := range lines {
			got[At{Segment: e.Name(), Off: offs[i]}] = string(l)
		}
	}
	sort.Strings(names)
	return got, names
}

func TestWriterAppendsAreReadBackWhereItSaid(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	w := NewWriter(dir)
	w.maxBytes = 64 << 10 // several segments
	want := map[At]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				line := fmt.Sprintf(`{"g":%d,"i":%d,"pad":"%0*d"}`, g, i, (g*i)%200, 0)
				at, err := w.Append(context.Background(), []byte(line), i%3 == 0)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				_, dup := want[at]
				assert.False(t, dup, "two lines given one place")
				want[at] = line
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.NoError(t, w.Close())
	got, names := segments(t, dir)
	assert.Equal(t, want, got, "every line once, where Append said")
	assert.Greater(t, len(names), 3, "segments closed at maxBytes")
	_, err := w.Append(context.Background(), []byte("x"), false)
	assert.Error(t, err, "closed")
}

func TestWriterSharesSyncsAndSyncsOnlyForDurableLines(t *testing.T) {
	w := NewWriter(t.TempDir())
	defer w.Close()
	for range 20 {
		_, err := w.Append(context.Background(), []byte("lazy"), false)
		require.NoError(t, err)
	}
	assert.Zero(t, w.Syncs(), "lines that need not be durable are not synced")

	sync0 := w.datasync
	w.datasync = func(f *os.File) error { time.Sleep(5 * time.Millisecond); return sync0(f) }
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			_, err := w.Append(context.Background(), []byte("durable"), true)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	assert.Positive(t, w.Syncs())
	assert.Less(t, w.Syncs(), int64(40), "concurrent durable lines share syncs")
}

func TestWriterFailureTurnsItOff(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(dir)
	defer w.Close()
	_, err := w.Append(context.Background(), []byte("before"), true)
	require.NoError(t, err)
	boom := errors.New("EIO")
	w.datasync = func(*os.File) error { return boom }
	_, err = w.Append(context.Background(), []byte("lost"), true)
	assert.ErrorIs(t, err, boom)
	w.datasync = datasync
	_, err = w.Append(context.Background(), []byte("after"), true)
	assert.ErrorIs(t, err, ErrWriterFailed, "no line is ever written after one whose sync failed")
	got, names := segments(t, dir)
	assert.Len(t, names, 1)
	var lines []string
	for _, l := range got {
		lines = append(lines, l)
	}
	sort.Strings(lines)
	assert.Equal(t, []string{"before", "lost"}, lines, "the failed batch may be there (its sync's outcome is unknown), nothing after it")
}

func TestWriterRefusesWhatIsNotOneLine(t *testing.T) {
	w := NewWriter(t.TempDir())
	defer w.Close()
	for _, bad := range []string{"a\nb", "a\x00b"} {
		_, err := w.Append(context.Background(), []byte(bad), false)
		assert.Error(t, err, "%q", bad)
	}
	_, err := w.Append(context.Background(), make([]byte, MaxLine), false)
	assert.ErrorIs(t, err, ErrLineTooLong)
}

func TestWriterRotatesByAge(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(dir)
	defer w.Close()
	w.maxAge = time.Millisecond
	for range 3 {
		_, err := w.Append(context.Background(), []byte("x"), false)
		require.NoError(t, err)
		time.Sleep(2 * time.Millisecond)
	}
	_, names := segments(t, dir)
	assert.Len(t, names, 3)
}
