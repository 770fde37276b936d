package piclient_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// reads are the idempotent calls, which retry on any unavailability.
var reads = map[string]func(c *piclient.Client, ctx context.Context) error{
	"get": func(c *piclient.Client, ctx context.Context) error { _, err := c.GetPayment(ctx, testID); return err },
	"incomplete": func(c *piclient.Client, ctx context.Context) error {
		_, err := c.IncompleteServerPayments(ctx)
		return err
	},
	"me": func(c *piclient.Client, ctx context.Context) error { _, err := c.Me(ctx, testToken); return err },
}

// posts are the state-changing calls, which retry only when the request
// certainly did not reach Pi.
var posts = map[string]func(c *piclient.Client, ctx context.Context) error{
	"approve": func(c *piclient.Client, ctx context.Context) error { _, err := c.Approve(ctx, testID); return err },
	"complete": func(c *piclient.Client, ctx context.Context) error {
		_, err := c.Complete(ctx, testID, testTxID)
		return err
	},
	"cancel": func(c *piclient.Client, ctx context.Context) error { _, err := c.Cancel(ctx, testID); return err },
}

// goodAnswer answers each call with a valid body.
func goodAnswer(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/me":
		writeJSON(w, http.StatusOK, userJSON)
	case "/payments/incomplete_server_payments":
		writeJSON(w, http.StatusOK, `{"incomplete_server_payments":[]}`)
	default:
		writeJSON(w, http.StatusOK, fullPaymentJSON(testID))
	}
}

// failures are the ways an attempt can fail without a trustworthy answer.
func failures() map[string]http.HandlerFunc {
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { writeJSON(w, code, `{"error":"x"}`) }
	}
	return map[string]http.HandlerFunc{
		"500":       status(500),
		"502":       status(502),
		"503":       status(503),
		"504":       status(504),
		"408":       status(408),
		"429":       status(429),
		"malformed": func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, `{"identifier":`) },
		"dropped":   func(w http.ResponseWriter, r *http.Request) { hangUp(w) },
		"truncated": func(w http.ResponseWriter, r *http.Request) {
			writeRaw(w, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{")
		},
		// The client's per-attempt timeout closes the connection, which ends
		// the request's context.
		"timeout": func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
	}
}

// attemptTimeout is the per-attempt timeout for a failure kind: short when
// the failure is a timeout, long otherwise so that a slow machine cannot turn
// another failure into a timeout.
func attemptTimeout(kind string) time.Duration {
	if kind == "timeout" {
		return 100 * time.Millisecond
	}
	return 10 * time.Second
}

func TestReadsRetryUntilMaxRetries(t *testing.T) {
	for fname, fail := range failures() {
		for rname, read := range reads {
			t.Run(fname+"/"+rname, func(t *testing.T) {
				f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { fail(w, r) })
				c := newClient(t, f.URL(), withRetries(2), withTimeout(attemptTimeout(fname)))
				err := read(c, context.Background())
				require.Error(t, err)
				assert.True(t, piclient.IsUnavailable(err))
				assert.EqualValues(t, 3, c.Attempts(), "1 + MaxRetries")
				if fname == "timeout" {
					// An attempt may time out before its request is written.
					assert.GreaterOrEqual(t, f.Hits(), 1)
					assert.LessOrEqual(t, f.Hits(), 3)
				} else {
					assert.Equal(t, 3, f.Hits(), "1 + MaxRetries")
				}
			})
		}
	}
}

func TestReadsRecoverAfterFailures(t *testing.T) {
	for fname, fail := range failures() {
		t.Run(fname, func(t *testing.T) {
			var n atomic.Int32
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) <= 2 {
					fail(w, r)
					return
				}
				goodAnswer(w, r)
			})
			c := newClient(t, f.URL(), withRetries(3), withTimeout(attemptTimeout(fname)))
			if fname == "timeout" {
				// Enough tries for two to time out after reaching the server
				// even if some time out before.
				c = newClient(t, f.URL(), withRetries(20), withTimeout(attemptTimeout(fname)))
			}
			p, err := c.GetPayment(context.Background(), testID)
			require.NoError(t, err)
			assertFullPayment(t, p)
			assert.Equal(t, 3, f.Hits())
		})
	}
}

func TestReadsDoNotRetryRejections(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 409} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, code, `{"error":"no"}`) })
			c := newClient(t, f.URL(), withRetries(3))
			for _, read := range reads {
				err := read(c, context.Background())
				require.Error(t, err)
				assert.True(t, piclient.IsRejected(err))
			}
			assert.Equal(t, len(reads), f.Hits())
		})
	}
}

func TestNegativeMaxRetriesDisablesRetries(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 503, `{}`) })
	c := newClient(t, f.URL(), withRetries(-1))
	_, err := c.GetPayment(context.Background(), testID)
	require.Error(t, err)
	assert.Equal(t, 1, f.Hits())
	_, err = c.Approve(context.Background(), testID)
	require.Error(t, err)
	assert.Equal(t, 2, f.Hits())

	// 429 on a POST is retryable, but not with retries disabled.
	f429 := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 429, `{}`) })
	_, err = newClient(t, f429.URL(), withRetries(-1)).Approve(context.Background(), testID)
	require.Error(t, err)
	assert.Equal(t, 1, f429.Hits())
}

func TestZeroMaxRetriesMeansDefault(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 503, `{}`) })
	c := newClient(t, f.URL(), withRetries(0))
	_, err := c.GetPayment(context.Background(), testID)
	require.Error(t, err)
	assert.Equal(t, 1+piclient.DefaultMaxRetries, f.Hits())
}

func TestRetryAfterCappedAtMaxBackoff(t *testing.T) {
	for _, ra := range []string{"3600", "99999999999999999999999", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)} {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", ra)
			writeJSON(w, http.StatusTooManyRequests, `{}`)
		})
		c := newClient(t, f.URL(), withRetries(2)) // MaxBackoff 5ms
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := reads["get"](c, ctx)
		cancel()
		require.Error(t, err)
		assert.Equal(t, 3, f.Hits(), "Retry-After %q", ra)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	const maxBackoff = 150 * time.Millisecond
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, `{"error":"rate_limited"}`)
	})
	c := newClient(t, f.URL(), withRetries(1), func(o *piclient.Options) {
		o.MinBackoff = time.Millisecond
		o.MaxBackoff = maxBackoff
	})
	err := reads["get"](c, context.Background())
	require.Error(t, err)
	var e *piclient.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, time.Second, e.RetryAfter)

	reqs := f.Requests()
	require.Len(t, reqs, 2)
	// Without Retry-After the wait would be at most 1.5ms; Retry-After: 1
	// capped at MaxBackoff makes it exactly 150ms.
	assert.GreaterOrEqual(t, reqs[1].At.Sub(reqs[0].At), maxBackoff)
}

func TestDeadlineShorterThanBackoffStopsEarly(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 503, `{}`) })
	c := newClient(t, f.URL(), withRetries(3), func(o *piclient.Options) {
		o.MinBackoff = time.Hour
		o.MaxBackoff = time.Hour
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := reads["get"](c, ctx)
	require.Error(t, err)
	assert.Equal(t, 503, piclient.StatusCode(err), "the last real failure is returned")
	assert.NoError(t, ctx.Err(), "returned at once instead of waiting for the deadline")
	assert.Equal(t, 1, f.Hits())
}

func TestCancelDuringBackoff(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 503, `{}`) })
	// The answer's body is closed once the attempt is over: cancel then, while
	// the client waits out its (hour-long) backoff.
	closed := make(chan struct{}, 8)
	rt := &closeNotifyingTransport{next: freshTransport(), closed: closed}
	c := newClient(t, f.URL(), withRetries(3), withHTTPClient(&http.Client{Transport: rt}), func(o *piclient.Options) {
		o.MinBackoff = time.Hour
		o.MaxBackoff = time.Hour
	})
	ctx, cancel := context.WithCancel(context.Background()) // no deadline: the call waits
	go func() {
		<-closed
		cancel()
	}()
	err := reads["get"](c, ctx)
	require.Error(t, err)
	assert.Equal(t, 503, piclient.StatusCode(err), "the last real failure is returned")
	assert.Equal(t, 1, f.Hits())
}

// closeNotifyingTransport signals on closed when an answer's body is closed.
type closeNotifyingTransport struct {
	next   http.RoundTripper
	closed chan<- struct{}
}

func (rt *closeNotifyingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(r)
	if err == nil {
		resp.Body = &notifyingBody{ReadCloser: resp.Body, closed: rt.closed}
	}
	return resp, err
}

type notifyingBody struct {
	io.ReadCloser
	closed chan<- struct{}
	once   sync.Once
}

func (b *notifyingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.closed <- struct{}{} })
	return err
}

func TestPostsNotRetriedAfterReachingPi(t *testing.T) {
	fs := failures()
	delete(fs, "429") // see TestPostsRetriedOn429
	for fname, fail := range fs {
		for pname, post := range posts {
			t.Run(fname+"/"+pname, func(t *testing.T) {
				f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { fail(w, r) })
				c := newClient(t, f.URL(), withRetries(3), withTimeout(attemptTimeout(fname)))
				err := post(c, context.Background())
				require.Error(t, err)
				assert.True(t, piclient.IsUnavailable(err))
				assert.Equal(t, 1, f.Hits(), "a POST that reached Pi is never repeated")
				if fname != "timeout" {
					// (A timeout before the request was written is retried.)
					assert.EqualValues(t, 1, c.Attempts())
				}
			})
		}
	}
}

func TestPostsRetriedOn429(t *testing.T) {
	for pname, post := range posts {
		t.Run(pname, func(t *testing.T) {
			var n atomic.Int32
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					writeJSON(w, http.StatusTooManyRequests, `{"error":"rate_limited"}`)
					return
				}
				goodAnswer(w, r)
			})
			c := newClient(t, f.URL(), withRetries(3))
			require.NoError(t, post(c, context.Background()))
			assert.Equal(t, 2, f.Hits())
		})
	}
	t.Run("always 429", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusTooManyRequests, `{"error":"rate_limited"}`)
		})
		c := newClient(t, f.URL(), withRetries(2))
		err := posts["approve"](c, context.Background())
		require.Error(t, err)
		assert.Equal(t, http.StatusTooManyRequests, piclient.StatusCode(err))
		assert.True(t, piclient.IsUnavailable(err))
		assert.Equal(t, 3, f.Hits())
	})
}

func TestPostsRetriedWhenNeverSent(t *testing.T) {
	t.Run("refused by a transport before writing", func(t *testing.T) {
		for pname, post := range posts {
			t.Run(pname, func(t *testing.T) {
				f := newFakePi(t, goodAnswer)
				rt := &refusingTransport{fail: 1, next: freshTransport()}
				c := newClient(t, f.URL(), withRetries(3), withHTTPClient(&http.Client{Transport: rt}))
				require.NoError(t, post(c, context.Background()))
				assert.EqualValues(t, 2, rt.calls.Load())
				assert.Equal(t, 1, f.Hits(), "the server saw the request once")
				assert.EqualValues(t, 2, c.Attempts())
			})
		}
	})
	t.Run("always refused", func(t *testing.T) {
		rt := &refusingTransport{fail: 1 << 30, next: freshTransport()}
		c := newClient(t, "http://pi.invalid", withRetries(2), withHTTPClient(&http.Client{Transport: rt}))
		err := posts["complete"](c, context.Background())
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
		assert.EqualValues(t, 3, rt.calls.Load())
	})
	t.Run("connection refused by a closed server", func(t *testing.T) {
		f := newFakePi(t, goodAnswer)
		url := f.URL()
		f.srv.Close()
		c := newClient(t, url, withRetries(2))
		err := posts["approve"](c, context.Background())
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
		assert.EqualValues(t, 3, c.Attempts(), "a dial failure is retried: nothing was written")
	})
	t.Run("written through a custom transport, then dropped", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { hangUp(w) })
		rt := &countingTransport{next: freshTransport()}
		c := newClient(t, f.URL(), withRetries(3), withHTTPClient(&http.Client{Transport: rt}))
		err := posts["approve"](c, context.Background())
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
		assert.EqualValues(t, 1, rt.calls.Load())
		assert.Equal(t, 1, f.Hits())
	})
}

func TestRedirectsNotFollowed(t *testing.T) {
	for _, code := range []int{301, 302, 303, 307, 308} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/payments/"+testID {
					// The target answers the payment, unchanged: following a
					// redirect would turn the POST into a GET and pass this
					// off as the approval's answer.
					writeJSON(w, http.StatusOK, minimalPaymentJSON(testID))
					return
				}
				http.Redirect(w, r, "/payments/"+testID, code)
			})
			c := newClient(t, f.URL())
			_, err := c.Approve(context.Background(), testID)
			require.Error(t, err)
			assert.Equal(t, code, piclient.StatusCode(err))
			assert.True(t, piclient.IsUnavailable(err))
			assert.Equal(t, 1, f.Hits())
			reqs := f.Requests()
			assert.Equal(t, http.MethodPost, reqs[0].Method)
		})
	}
}

// TestRetryDecodesIntoFreshValue: a failed attempt that decoded part of its
// answer must not leave data behind for a later attempt whose answer omits
// those fields.
func TestRetryDecodesIntoFreshValue(t *testing.T) {
	var n atomic.Int32
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			// Decodes transaction, then fails on memo's type.
			writeJSON(w, http.StatusOK, `{"identifier":"`+testID+`","transaction":{"txid":"stale","verified":true,"_link":"x"},`+
				`"status":{"developer_completed":true},"memo":5}`)
			return
		}
		writeJSON(w, http.StatusOK, `{"identifier":"`+testID+`","amount":"2","memo":"fresh"}`)
	})
	c := newClient(t, f.URL(), withRetries(1))
	p, err := c.GetPayment(context.Background(), testID)
	require.NoError(t, err)
	assert.Equal(t, 2, f.Hits())
	assert.Nil(t, p.Transaction, "nothing from the failed attempt")
	assert.False(t, p.Status.DeveloperCompleted)
	assert.Equal(t, "fresh", p.Memo)
	assert.False(t, p.IsCompletedWith("stale"))
}
