package piclient_test

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// A caller's own httptrace hooks see every call, reads (which the client does
// not trace) and state-changing calls (whose trace the client composes with
// the caller's) alike.
func TestCallerTraceSeesEveryCall(t *testing.T) {
	f := newFakePi(t, goodAnswer)
	c := newClient(t, f.URL())
	var wrote, got atomic.Int32
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { got.Add(1) },
		WroteHeaders: func() { wrote.Add(1) },
	})
	for name, call := range reads {
		require.NoError(t, call(c, ctx), name)
	}
	for name, call := range posts {
		require.NoError(t, call(c, ctx), name)
	}
	n := int32(len(reads) + len(posts))
	assert.Equal(t, n, wrote.Load())
	assert.Equal(t, n, got.Load())
	assert.Equal(t, int(n), f.Hits())
}

// A state-changing call dropped after it was written is not repeated even
// when the caller traces it too.
func TestWrittenPostNotRetriedUnderCallerTrace(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { hangUp(w) })
	c := newClient(t, f.URL(), withRetries(3))
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{WroteHeaders: func() {}})
	for name, call := range posts {
		require.Error(t, call(c, ctx), name)
	}
	assert.Equal(t, len(posts), f.Hits())
	assert.EqualValues(t, len(posts), c.Attempts())
}

// Each attempt is bounded by Options.Timeout or by the caller's deadline,
// whichever comes first.
func TestAttemptBoundedByTheSoonerDeadline(t *testing.T) {
	newBlocked := func(t *testing.T, stallBody bool) *fakePi {
		var f *fakePi
		f = newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			if stallBody {
				w.Header().Set("Content-Length", "1000")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(`{"identifier":"`))
				w.(http.Flusher).Flush()
			}
			f.block(r)
		})
		return f
	}
	t.Run("caller's deadline first", func(t *testing.T) {
		for _, stall := range []bool{false, true} {
			f := newBlocked(t, stall)
			c := newClient(t, f.URL(), withRetries(3), withTimeout(time.Minute))
			for name, call := range map[string]func(*piclient.Client, context.Context) error{"get": reads["get"], "approve": posts["approve"]} {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				start := time.Now()
				err := call(c, ctx)
				cancel()
				require.Error(t, err, name)
				assert.ErrorIs(t, err, context.DeadlineExceeded, name)
				assert.True(t, piclient.IsUnavailable(err), name)
				assert.Less(t, time.Since(start), 30*time.Second, name)
				if stall {
					assert.Contains(t, err.Error(), "reading answer", name)
				}
			}
			assert.EqualValues(t, 2, c.Attempts(), "no retry once the caller's deadline passed")
		}
	})
	t.Run("timeout first", func(t *testing.T) {
		for _, stall := range []bool{false, true} {
			f := newBlocked(t, stall)
			c := newClient(t, f.URL(), withRetries(2), withTimeout(50*time.Millisecond))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			start := time.Now()
			err := reads["get"](c, ctx)
			cancel()
			require.Error(t, err)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.True(t, piclient.IsUnavailable(err))
			assert.Less(t, time.Since(start), 30*time.Second)
			assert.EqualValues(t, 3, c.Attempts(), "each attempt timed out on its own and was retried")
		}
	})
	t.Run("caller's deadline first, answered", func(t *testing.T) {
		f := newFakePi(t, goodAnswer)
		c := newClient(t, f.URL(), withTimeout(time.Minute))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for name, call := range reads {
			require.NoError(t, call(c, ctx), name)
		}
		for name, call := range posts {
			require.NoError(t, call(c, ctx), name)
		}
	})
}
