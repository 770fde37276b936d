package piclient_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
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

// What a call returns owns its data: the buffer the answer was read into is
// used again by the next call.
func TestAnswersDoNotShareTheReadBuffer(t *testing.T) {
	const other = "zYxW9876vUtS5432rQpO1098nMlK"
	flip := func(s string) string {
		return strings.NewReplacer(testID, other, testTxID, strings.Repeat("f", 64), "deluxe", "DELUXE", "3.14", "9.99",
			"user-0a1b2c3d", "user-9z8y7x6w", `"order" : 42`, `"order" : 24`).Replace(s)
	}
	answers := map[string]string{testID: fullPaymentJSON(testID), other: flip(fullPaymentJSON(testID))}
	require.Len(t, answers[other], len(answers[testID]), "same length, so that one overwrites the other in place")
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/payments/"), "/cancel")
		if strings.HasSuffix(r.URL.Path, "/cancel") {
			writeJSON(w, http.StatusBadRequest, `{"error":"already_completed","error_message":"done `+id+`","payment":`+answers[id]+`}`)
			return
		}
		writeJSON(w, http.StatusOK, answers[id])
	})
	c := newClient(t, f.URL())
	ctx := context.Background()
	for range 20 {
		p, err := c.GetPayment(ctx, testID)
		require.NoError(t, err)
		_, cerr := c.Cancel(ctx, testID)
		require.Error(t, cerr)
		q, err := c.GetPayment(ctx, other)
		require.NoError(t, err)
		_, err = c.Cancel(ctx, other)
		require.Error(t, err)

		assertFullPayment(t, p)
		assert.Equal(t, other, q.Identifier)
		assert.Equal(t, `Order #42 "DELUXE"`, q.Memo)
		var e *piclient.Error
		require.ErrorAs(t, cerr, &e)
		assert.Equal(t, "already_completed", e.Code)
		assert.Equal(t, "done "+testID, e.Message)
		assertFullPayment(t, e.Payment)
	}
}

// Every answer is read to its end, so the connection is used again: answers
// with Pi's error body, HTML pages and refusals alike.
func TestConnectionReusedAfterEveryKindOfAnswer(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/cancel"):
			writeJSON(w, http.StatusBadRequest, `{"error":"payment_tx_present","error_message":"no"}`)
		case r.URL.Path == "/me":
			writeJSON(w, http.StatusUnauthorized, `{"error":"unauthorized"}`)
		case r.URL.Path == "/payments/incomplete_server_payments":
			w.Header().Set("Retry-After", "0")
			writeJSON(w, http.StatusTooManyRequests, `{"error":"rate_limited"}`)
		case strings.HasPrefix(r.URL.Path, "/payments/missing"):
			writeJSON(w, http.StatusNotFound, `{"error":"payment_not_found"}`)
		case strings.HasPrefix(r.URL.Path, "/payments/html"):
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, strings.Repeat("<p>bad gateway</p>\n", 200))
		case strings.HasPrefix(r.URL.Path, "/payments/big"):
			// Larger than a pooled buffer, written in chunks without a
			// Content-Length.
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"identifier":"big","memo":"`)
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, strings.Repeat("m", 100<<10)+`"}`)
		default:
			writeJSON(w, http.StatusOK, fullPaymentJSON(testID))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, withRetries(-1))
	ctx := context.Background()
	for range 3 {
		_, err := c.GetPayment(ctx, testID)
		require.NoError(t, err)
		_, err = c.Approve(ctx, testID)
		require.NoError(t, err)
		_, err = c.Complete(ctx, testID, testTxID)
		require.NoError(t, err)
		_, err = c.Cancel(ctx, testID)
		require.True(t, piclient.IsRejected(err), "%v", err)
		_, err = c.Me(ctx, testToken)
		require.True(t, piclient.IsUnauthorized(err), "%v", err)
		_, err = c.IncompleteServerPayments(ctx)
		require.Equal(t, http.StatusTooManyRequests, piclient.StatusCode(err), "%v", err)
		_, err = c.GetPayment(ctx, "missing")
		require.True(t, piclient.IsNotFound(err), "%v", err)
		_, err = c.GetPayment(ctx, "html")
		require.ErrorIs(t, err, piclient.ErrNotAPIError)
		p, err := c.GetPayment(ctx, "big")
		require.NoError(t, err)
		require.Len(t, p.Memo, 100<<10)
	}
	assert.EqualValues(t, 1, conns.Load(), "one connection for every call")
}
