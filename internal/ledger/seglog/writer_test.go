package seglog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
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
	assert.Equal(t, []string{"before", "lost"}, slices.Sorted(maps.Values(got)), "the failed batch may be there (its sync's outcome is unknown), nothing after it")
}

func TestWriterRefusesWhatIsNotOneLine(t *testing.T) {
	w := NewWriter(t.TempDir())
	defer w.Close()
	for _, bad := range []string{"a\nb", "a\x00b"} {
		_, err := w.Append(context.Background(), []byte(bad), false)
		assert.Error(t, err, "%q", bad)
	}
	w.maxLine = 1 << 20 // MaxLine, lowered: the test makes a line that long
	_, err := w.Append(context.Background(), make([]byte, w.maxLine), false)
	assert.ErrorIs(t, err, ErrLineTooLong)
	assert.Equal(t, 1<<29*3, MaxLine, "a record with a request of max_body's largest (1 GiB, base64) fits")
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

// TestWriterNeverWritesALineAfterSayingItDidNot: a context that ends before
// the line is taken keeps it out; once taken, Append waits for the outcome
// whatever its context, since the payment's lock is released on its answer.
func TestWriterNeverWritesALineAfterSayingItDidNot(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(dir)
	defer w.Close()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := w.Append(done, []byte("refused"), true)
	assert.ErrorIs(t, err, context.Canceled)

	gate := make(chan struct{})
	sync0 := w.datasync
	w.datasync = func(f *os.File) error { <-gate; return sync0(f) }
	ctx, stop := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer stop()
	errc := make(chan error, 1)
	go func() {
		_, err := w.Append(ctx, []byte("taken"), true)
		errc <- err
	}()
	time.Sleep(60 * time.Millisecond) // its context has ended meanwhile
	close(gate)
	assert.NoError(t, <-errc, "the line was written and synced: Append says so")
	got, _ := segments(t, dir)
	assert.Equal(t, []string{"taken"}, slices.Collect(maps.Values(got)))
}

// TestWriterClosesAnIdleSegmentByAge: a segment is finished after maxAge
// even when no append comes (its lock dropped, so compaction may take it,
// and its reserved space given back), and Close finishes the current one.
func TestWriterClosesAnIdleSegmentByAge(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(dir)
	defer w.Close()
	w.maxAge = 20 * time.Millisecond
	at, err := w.Append(context.Background(), []byte("idle"), false)
	require.NoError(t, err)
	name := filepath.Join(dir, at.Segment)
	require.Eventually(t, func() bool {
		fi, err := os.Stat(name)
		return err == nil && fi.Size() == int64(len("idle\n")) && unlocked(t, name)
	}, 10*time.Second, 10*time.Millisecond, "finished: only what was written is left, and nobody holds it")

	at, err = w.Append(context.Background(), []byte("next"), false)
	require.NoError(t, err)
	assert.NotEqual(t, filepath.Base(name), at.Segment, "a new segment")
	w.maxAge = time.Hour
	require.NoError(t, w.Close())
	fi, err := os.Stat(filepath.Join(dir, at.Segment))
	require.NoError(t, err)
	assert.Equal(t, int64(len("next\n")), fi.Size(), "Close gives the reserved space back too")
}

// TestWriterAndTailTogether: lines appended by the writer, durable and lazy,
// read while they are written by a Tail of the same segment.
func TestWriterAndTailTogether(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(dir)
	defer w.Close()
	first, err := w.Append(context.Background(), []byte("0"), true)
	require.NoError(t, err)
	f, err := os.Open(filepath.Join(dir, first.Segment))
	require.NoError(t, err)
	defer f.Close()
	const n = 3000
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range n / 4 {
				_, err := w.Append(context.Background(), []byte(fmt.Sprintf("%d-%d-%0*d", g, i, i%700, 0)), i%2 == 0)
				assert.NoError(t, err)
			}
		})
	}
	tail := NewTail(f, 0)
	seen := map[string]bool{}
	deadline := time.Now().Add(time.Minute)
	for len(seen) < n+1 {
		require.True(t, time.Now().Before(deadline), "read %d of %d lines in a minute", len(seen), n+1)
		lines, _, err := tail.Read()
		require.NoError(t, err)
		for _, l := range lines {
			assert.False(t, seen[string(l)], "read twice: %s", l)
			seen[string(l)] = true
		}
	}
	wg.Wait()
}

// TestWriterCloseRacingAppends: an Append either is refused as closed or
// returns with its line written into a segment Close finished; a line
// queued before Close is never refused after it.
func TestWriterCloseRacingAppends(t *testing.T) {
	for range 50 {
		dir := t.TempDir()
		w := NewWriter(dir)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var written []At
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				at, err := w.Append(context.Background(), []byte(fmt.Sprintf("line-%02d", i)), i%2 == 0)
				if err != nil {
					assert.Contains(t, err.Error(), "closed")
					return
				}
				mu.Lock()
				written = append(written, at)
				mu.Unlock()
			}()
		}
		require.NoError(t, w.Close())
		wg.Wait()
		for _, at := range written {
			data, err := os.ReadFile(filepath.Join(dir, at.Segment))
			require.NoError(t, err)
			lines, _ := Scan(data[at.Off:])
			require.NotEmpty(t, lines, "an acknowledged line is in its segment")
			assert.NotContains(t, string(data), "\x00", "its segment finished: cut to what was written")
			assert.True(t, unlocked(t, filepath.Join(dir, at.Segment)), "and unlocked")
		}
	}
}
