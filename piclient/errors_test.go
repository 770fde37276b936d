package piclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

func TestHTTPErrorStatuses(t *testing.T) {
	type want struct {
		rejected, notFound, unauthorized bool
		code, message                    string
	}
	cases := []struct {
		status int
		body   string
		want   want
	}{
		{400, `{"error":"already_completed","error_message":"This payment was already completed"}`,
			want{rejected: true, code: "already_completed", message: "This payment was already completed"}},
		{409, `{"error":"already_approved","error_message":"nope"}`, want{rejected: true, code: "already_approved", message: "nope"}},
		{400, `{"error":"bad","message":"fallback message"}`, want{rejected: true, code: "bad", message: "fallback message"}},
		{400, `{"error":"bad","error_message":"preferred","message":"fallback"}`, want{rejected: true, code: "bad", message: "preferred"}},
		// Only Pi's JSON error body is Pi saying no.
		{400, `not json at all`, want{}},
		{400, `{"error":""}`, want{}},
		{400, `{"error":5,"error_message":"x"}`, want{}},
		{400, `{"error_message":"no code"}`, want{}},
		{400, `["error"]`, want{}},
		{400, `null`, want{}},
		{400, `{"error":"bad","error_message":7}`, want{rejected: true, code: "bad"}},
		{403, `{"error":"forbidden"}`, want{rejected: true, code: "forbidden"}},
		{404, `{"error":"payment_not_found","error_message":"Payment not found"}`,
			want{rejected: true, notFound: true, code: "payment_not_found", message: "Payment not found"}},
		{404, `<html>Not Found</html>`, want{}},
		{403, `<html><head><title>403 Forbidden</title></head></html>`, want{}},
		{401, `{"error":"unauthorized","error_message":"Invalid API key"}`,
			want{rejected: true, unauthorized: true, code: "unauthorized", message: "Invalid API key"}},
		{408, `{"error":"timeout"}`, want{code: "timeout"}},
		{429, `{"error":"rate_limited","error_message":"slow down"}`, want{code: "rate_limited", message: "slow down"}},
		{500, `{"error":"internal","error_message":"boom"}`, want{code: "internal", message: "boom"}},
		{502, ``, want{}},
		{503, `{"error":"maintenance"}`, want{code: "maintenance"}},
		{504, `<html>gateway timeout</html>`, want{}},
		{201, minimalPaymentJSON(testID), want{}},
		{204, ``, want{}},
		{302, ``, want{}},
		{307, ``, want{}},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.status)+"_"+tc.want.code, func(t *testing.T) {
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.status/100 == 3 {
					w.Header().Set("Location", "/payments/"+testID)
				}
				writeJSON(w, tc.status, tc.body)
			})
			c := newClient(t, f.URL(), withRetries(-1))
			for _, op := range []string{"get", "approve"} {
				var err error
				if op == "get" {
					_, err = c.GetPayment(context.Background(), testID)
				} else {
					_, err = c.Approve(context.Background(), testID)
				}
				require.Error(t, err)
				w := tc.want
				assert.Equal(t, w.rejected, piclient.IsRejected(err), "IsRejected")
				assert.Equal(t, !w.rejected, piclient.IsUnavailable(err), "IsUnavailable")
				assert.False(t, piclient.IsInvalid(err))
				assert.Equal(t, w.notFound, piclient.IsNotFound(err), "IsNotFound")
				assert.Equal(t, w.unauthorized, piclient.IsUnauthorized(err), "IsUnauthorized")
				assert.Equal(t, tc.status, piclient.StatusCode(err))
				assert.Equal(t, w.code, piclient.ErrorCode(err))

				var e *piclient.Error
				require.ErrorAs(t, err, &e)
				assert.Equal(t, op, e.Op)
				assert.Equal(t, testID, e.PaymentID)
				assert.Equal(t, w.message, e.Message)
				assert.Equal(t, w.rejected, e.Rejected())
				assert.Equal(t, !w.rejected, e.Unavailable())
				assert.Contains(t, err.Error(), "HTTP "+strconv.Itoa(tc.status))
			}
			assert.Equal(t, 2, f.Hits(), "one request per call: redirects are not followed")
		})
	}
}

func TestErrorText(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, `{"error":"already_completed","error_message":"This payment was already completed"}`)
	})
	_, err := newClient(t, f.URL()).Complete(context.Background(), testID, testTxID)
	require.Error(t, err)
	assert.Equal(t, "pi api complete payment "+testID+": HTTP 400 already_completed: This payment was already completed", err.Error())
}

func TestErrorTextFormats(t *testing.T) {
	long := strings.Repeat("é", 150) // 300 bytes
	cases := []struct {
		e    *piclient.Error
		want string
	}{
		{&piclient.Error{Op: "get"}, "pi api get: failed"},
		{&piclient.Error{Op: "me", Err: errors.New("dial tcp: refused")}, "pi api me: dial tcp: refused"},
		{&piclient.Error{Op: "get", PaymentID: "p1", StatusCode: 503}, "pi api get payment p1: HTTP 503"},
		{&piclient.Error{Op: "get", PaymentID: "p1", StatusCode: 200, Err: errors.New("malformed answer: x")},
			"pi api get payment p1: HTTP 200: malformed answer: x"},
		{&piclient.Error{Op: "cancel", PaymentID: "p1", StatusCode: 400, Code: "c", Message: "m"}, "pi api cancel payment p1: HTTP 400 c: m"},
		{&piclient.Error{Op: "cancel", StatusCode: 400, Message: long}, "pi api cancel: HTTP 400: " + strings.Repeat("é", 100) + "…"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, tc.e.Error())
	}
	// Truncation never cuts a UTF-8 sequence in two.
	odd := &piclient.Error{Op: "get", StatusCode: 400, Message: "x" + long}
	assert.True(t, strings.HasSuffix(odd.Error(), "é…"), odd.Error())
	assert.NotContains(t, odd.Error(), "\uFFFD")
}

func TestErrorPredicates(t *testing.T) {
	for status, rejected := range map[int]bool{
		0: false, 200: false, 302: false, 400: true, 401: true, 403: true, 404: true, 409: true, 422: true,
		408: false, 429: false, 499: true, 500: false, 503: false,
	} {
		e := &piclient.Error{Op: "get", StatusCode: status}
		assert.Equal(t, rejected, e.Rejected(), "%d", status)
		assert.Equal(t, rejected, piclient.IsRejected(e), "%d", status)
		assert.Equal(t, !rejected, e.Unavailable(), "%d", status)
		assert.Equal(t, !rejected, piclient.IsUnavailable(e), "%d", status)
		assert.Equal(t, status, piclient.StatusCode(e))
		// Wrapped errors are seen through.
		wrapped := fmt.Errorf("handler: %w", e)
		assert.Equal(t, rejected, piclient.IsRejected(wrapped))
		assert.Equal(t, status, piclient.StatusCode(wrapped))
	}

	// A 4xx whose body could not be used as the answer is not a rejection.
	withErr := &piclient.Error{Op: "get", StatusCode: 404, Err: errors.New("x")}
	assert.False(t, withErr.Rejected())
	assert.False(t, piclient.IsNotFound(withErr))
	assert.True(t, piclient.IsNotFound(&piclient.Error{StatusCode: 404}))
	assert.True(t, piclient.IsUnauthorized(&piclient.Error{StatusCode: 401}))
	assert.False(t, piclient.IsUnauthorized(&piclient.Error{StatusCode: 403}))

	// Errors that are not *Error.
	plain := errors.New("plain")
	assert.True(t, piclient.IsUnavailable(plain))
	assert.True(t, piclient.IsUnavailable(context.Canceled))
	assert.False(t, piclient.IsUnavailable(nil))
	assert.False(t, piclient.IsRejected(plain))
	assert.False(t, piclient.IsRejected(nil))
	assert.False(t, piclient.IsNotFound(plain))
	assert.Equal(t, 0, piclient.StatusCode(plain))
	assert.Equal(t, "", piclient.ErrorCode(plain))
	assert.Equal(t, "x", piclient.ErrorCode(&piclient.Error{Code: "x"}))

	// Validation errors.
	inv := &piclient.Error{Op: "get", Err: fmt.Errorf("%w: empty", piclient.ErrInvalidPaymentID)}
	assert.True(t, piclient.IsInvalid(inv))
	assert.False(t, piclient.IsUnavailable(inv))
	assert.False(t, inv.Unavailable())
	assert.False(t, inv.Rejected())
	assert.True(t, piclient.IsInvalid(piclient.ErrInvalidTxID))
	assert.True(t, piclient.IsInvalid(piclient.ErrInvalidToken))
	assert.False(t, piclient.IsInvalid(plain))
	assert.False(t, piclient.IsInvalid(nil))

	// Unwrap.
	cause := errors.New("cause")
	assert.ErrorIs(t, &piclient.Error{Err: cause}, cause)
}

func TestNetworkErrors(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {})
		url := f.URL()
		f.srv.Close()
		c := newClient(t, url, withRetries(-1))
		_, err := c.GetPayment(context.Background(), testID)
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
		assert.Equal(t, 0, piclient.StatusCode(err))
		assert.NotContains(t, err.Error(), url, "the URL is dropped from transport errors")
		_, err = c.Approve(context.Background(), testID)
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
	})
	t.Run("connection dropped", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { hangUp(w) })
		c := newClient(t, f.URL(), withRetries(-1))
		_, err := c.GetPayment(context.Background(), testID)
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
		assert.Equal(t, 0, piclient.StatusCode(err))
		_, err = c.Cancel(context.Background(), testID)
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
		assert.Equal(t, 2, f.Hits())
	})
	t.Run("garbage instead of HTTP", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeRaw(w, "SSH-2.0-OpenSSH\r\n\r\n") })
		_, err := newClient(t, f.URL(), withRetries(-1)).GetPayment(context.Background(), testID)
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
	})
}

func TestTimeout(t *testing.T) {
	t.Run("no answer", func(t *testing.T) {
		var f *fakePi
		f = newFakePi(t, func(w http.ResponseWriter, r *http.Request) { f.block(r) })
		c := newClient(t, f.URL(), withRetries(-1), withTimeout(30*time.Millisecond))
		_, err := c.GetPayment(context.Background(), testID)
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.True(t, piclient.IsUnavailable(err))
		assert.Equal(t, 0, piclient.StatusCode(err))
	})
	t.Run("body stalls", func(t *testing.T) {
		var f *fakePi
		f = newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"identifier":"`)
			w.(http.Flusher).Flush()
			f.block(r)
		})
		c := newClient(t, f.URL(), withRetries(-1), withTimeout(300*time.Millisecond))
		_, err := c.GetPayment(context.Background(), testID)
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.True(t, piclient.IsUnavailable(err))
		assert.Contains(t, err.Error(), "reading answer")
	})
}

func TestContextCancellation(t *testing.T) {
	t.Run("during the request", func(t *testing.T) {
		arrived := make(chan struct{}, 8)
		var f *fakePi
		f = newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			f.block(r)
		})
		c := newClient(t, f.URL(), withRetries(3))
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-arrived
			cancel()
		}()
		_, err := c.GetPayment(ctx, testID)
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)
		assert.True(t, piclient.IsUnavailable(err))
		assert.Equal(t, 1, f.Hits(), "a cancelled call is not retried")
		assert.EqualValues(t, 1, c.Attempts())
	})
	t.Run("already cancelled", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, minimalPaymentJSON(testID))
		})
		c := newClient(t, f.URL())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, call := range []func() error{
			func() error { _, err := c.GetPayment(ctx, testID); return err },
			func() error { _, err := c.Approve(ctx, testID); return err },
			func() error { _, err := c.Me(ctx, testToken); return err },
			func() error { _, err := c.IncompleteServerPayments(ctx); return err },
		} {
			err := call()
			require.Error(t, err)
			assert.ErrorIs(t, err, context.Canceled)
			assert.True(t, piclient.IsUnavailable(err))
		}
		assert.Equal(t, 0, f.Hits())
	})
}

func TestMalformedAnswers(t *testing.T) {
	for name, body := range map[string]string{
		"not json":        `{not json`,
		"empty":           ``,
		"array":           `[]`,
		"string":          `"payment"`,
		"bad amount":      `{"identifier":"` + testID + `","amount":"abc"}`,
		"amount is bool":  `{"identifier":"` + testID + `","amount":true}`,
		"amount hex":      `{"identifier":"` + testID + `","amount":"0x10"}`,
		"wrong type":      `{"identifier":5}`,
		"status is array": `{"identifier":"` + testID + `","status":[]}`,
		"trailing data":   minimalPaymentJSON(testID) + `{}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, body)
			})
			_, err := newClient(t, f.URL(), withRetries(-1)).GetPayment(context.Background(), testID)
			require.Error(t, err)
			assert.True(t, piclient.IsUnavailable(err))
			assert.False(t, piclient.IsRejected(err))
			assert.Equal(t, http.StatusOK, piclient.StatusCode(err))
			assert.Contains(t, err.Error(), "malformed answer")
		})
	}
}

func TestTruncatedBody(t *testing.T) {
	full := minimalPaymentJSON(testID)
	for name, raw := range map[string]string{
		// The JSON is complete, but fewer bytes than announced arrived.
		"complete JSON, short of Content-Length": "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(full)+10) + "\r\n\r\n" + full,
		"cut JSON": "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(full)) + "\r\n\r\n" + full[:len(full)/2],
		"chunked, no last chunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strconv.FormatInt(int64(len(full)), 16) + "\r\n" + full + "\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeRaw(w, raw) })
			c := newClient(t, f.URL(), withRetries(-1))
			_, err := c.GetPayment(context.Background(), testID)
			require.Error(t, err)
			assert.True(t, piclient.IsUnavailable(err))
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
			assert.Contains(t, err.Error(), "reading answer")

			_, err = c.Approve(context.Background(), testID)
			require.Error(t, err)
			assert.True(t, piclient.IsUnavailable(err))
			assert.Equal(t, 2, f.Hits())
		})
	}
}

func TestAnswerForAnotherPayment(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, minimalPaymentJSON("someone_elses_payment"))
	})
	c := newClient(t, f.URL(), withRetries(3))
	for name, call := range map[string]func() error{
		"get":      func() error { _, err := c.GetPayment(context.Background(), testID); return err },
		"approve":  func() error { _, err := c.Approve(context.Background(), testID); return err },
		"complete": func() error { _, err := c.Complete(context.Background(), testID, testTxID); return err },
		"cancel":   func() error { _, err := c.Cancel(context.Background(), testID); return err },
	} {
		err := call()
		require.Error(t, err, name)
		assert.True(t, piclient.IsUnavailable(err), name)
		assert.False(t, piclient.IsRejected(err), name)
		assert.Equal(t, http.StatusOK, piclient.StatusCode(err))
		assert.Contains(t, err.Error(), `"someone_elses_payment"`)
	}
	assert.Equal(t, 4, f.Hits(), "not retried")

	// A null answer has no identifier either.
	f2 := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, `null`) })
	_, err := newClient(t, f2.URL()).GetPayment(context.Background(), testID)
	require.Error(t, err)
	assert.True(t, piclient.IsUnavailable(err))
}

// paddedPayment is a valid payment answer exactly n bytes long.
func paddedPayment(t *testing.T, n int) string {
	head := `{"identifier":"` + testID + `","amount":1,"memo":"`
	tail := `"}`
	require.Greater(t, n, len(head)+len(tail))
	return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
}

func TestOversizedAnswer(t *testing.T) {
	t.Run("at the limit", func(t *testing.T) {
		body := paddedPayment(t, piclient.MaxResponseBytes)
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, body) })
		p, err := newClient(t, f.URL()).GetPayment(context.Background(), testID)
		require.NoError(t, err)
		assert.Len(t, p.Memo, piclient.MaxResponseBytes-len(`{"identifier":"`+testID+`","amount":1,"memo":""}`))
	})
	t.Run("one byte over", func(t *testing.T) {
		body := paddedPayment(t, piclient.MaxResponseBytes+1)
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, body) })
		c := newClient(t, f.URL(), withRetries(-1))
		_, err := c.GetPayment(context.Background(), testID)
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
		assert.Contains(t, err.Error(), "larger than")
		_, err = c.Approve(context.Background(), testID)
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
		assert.Equal(t, 2, f.Hits())
	})
	t.Run("endless", func(t *testing.T) {
		var f *fakePi
		f = newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"memo":"`)
			chunk := []byte(strings.Repeat("a", 64<<10))
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				select {
				case <-f.quit:
					return
				default:
				}
			}
		})
		_, err := newClient(t, f.URL(), withRetries(-1)).GetPayment(context.Background(), testID)
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
		assert.Contains(t, err.Error(), "larger than")
	})
}

// TestErrorsNeverContainTheKey provokes every kind of error, some with a
// server that echoes the key back, and checks that no rendering of the error
// shows the key (or a long piece of it).
func TestErrorsNeverContainTheKey(t *testing.T) {
	echoStatus := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			auth := r.Header.Get("Authorization")
			writeJSON(w, status, `{"error":"bad key `+auth+`","error_message":"you sent `+auth+` and `+testKey[5:30]+`"}`)
		}
	}
	echo200 := func(body func(auth string) string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, body(r.Header.Get("Authorization")))
		}
	}
	scenarios := map[string]http.HandlerFunc{
		"401 echo":          echoStatus(401),
		"400 echo":          echoStatus(400),
		"429 echo":          echoStatus(429),
		"500 echo":          echoStatus(500),
		"malformed echo":    echo200(func(a string) string { return `{"identifier":"` + a }),
		"amount echo":       echo200(func(a string) string { return `{"identifier":"` + testID + `","amount":"` + a + `"}` }),
		"amount key echo":   echo200(func(string) string { return `{"identifier":"` + testID + `","amount":"` + testKey + `"}` }),
		"identifier echo":   echo200(func(string) string { return `{"identifier":"` + testKey + `"}` }),
		"identifier prefix": echo200(func(string) string { return `{"identifier":"x` + testKey[:30] + `"}` }),
		"type error echo":   echo200(func(a string) string { return `{"identifier":"` + testID + `","memo":{"` + a + `":1}}` }),
		"redirect echo": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "/"+testKey)
			writeJSON(w, http.StatusFound, `{"error":"`+testKey+`"}`)
		},
		"dropped": func(w http.ResponseWriter, r *http.Request) { hangUp(w) },
		"garbage": func(w http.ResponseWriter, r *http.Request) { writeRaw(w, "HTTP/1.1 "+testKey+"\r\n\r\n") },
		"truncated": func(w http.ResponseWriter, r *http.Request) {
			writeRaw(w, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{")
		},
		"oversized": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, strings.Repeat(testKey, piclient.MaxResponseBytes/len(testKey)+1))
		},
	}
	var errs []error
	for name, h := range scenarios {
		f := newFakePi(t, h)
		c := newClient(t, f.URL(), withRetries(-1))
		_, err := c.GetPayment(context.Background(), testID)
		require.Error(t, err, name)
		errs = append(errs, err)
		_, err = c.Complete(context.Background(), testID, testTxID)
		require.Error(t, err, name)
		errs = append(errs, err)
		_, err = c.IncompleteServerPayments(context.Background())
		require.Error(t, err, name)
		errs = append(errs, err)
	}

	// Timeout and cancellation.
	var slow *fakePi
	slow = newFakePi(t, func(w http.ResponseWriter, r *http.Request) { slow.block(r) })
	_, err := newClient(t, slow.URL(), withRetries(-1), withTimeout(10*time.Millisecond)).Approve(context.Background(), testID)
	require.Error(t, err)
	errs = append(errs, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = newClient(t, slow.URL()).GetPayment(ctx, testID)
	require.Error(t, err)
	errs = append(errs, err)

	// Refused connection.
	closed := newFakePi(t, func(http.ResponseWriter, *http.Request) {})
	closed.srv.Close()
	_, err = newClient(t, closed.URL(), withRetries(-1)).Cancel(context.Background(), testID)
	require.Error(t, err)
	errs = append(errs, err)

	// Validation.
	_, err = newClient(t, slow.URL()).GetPayment(context.Background(), testKey+"/x")
	require.Error(t, err)
	errs = append(errs, err)
	_, err = newClient(t, slow.URL()).Complete(context.Background(), testID, testKey)
	require.Error(t, err)
	errs = append(errs, err)

	// New.
	_, err = piclient.New(piclient.Options{APIKey: testKey, BaseURL: "ftp://x"})
	require.Error(t, err)
	errs = append(errs, err)
	_, err = piclient.New(piclient.Options{APIKey: testKey + "\n"})
	require.Error(t, err)
	errs = append(errs, err)

	for _, err := range errs {
		for _, s := range []string{err.Error(), fmt.Sprintf("%v|%+v|%#v|%s|%q", err, err, err, err, err)} {
			assert.NotContains(t, s, testKey)
			assert.NotContains(t, s, testKey[:16])
			assert.NotContains(t, s, testKey[len(testKey)-16:])
			assert.NotContains(t, s, testKey[10:26])
		}
		var e *piclient.Error
		if errors.As(err, &e) {
			assert.NotContains(t, e.Message, testKey[:16])
			assert.NotContains(t, e.Code, testKey[:16])
		}
	}
}

func TestMeErrorsNeverContainTheToken(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		writeJSON(w, http.StatusUnauthorized, `{"error":"`+auth+`","error_message":"token `+auth+` expired"}`)
	})
	_, err := newClient(t, f.URL()).Me(context.Background(), testToken)
	require.Error(t, err)
	assert.True(t, piclient.IsUnauthorized(err))
	assert.NotContains(t, err.Error(), testToken)
	assert.NotContains(t, err.Error(), testToken[:16])
	assert.Contains(t, err.Error(), "[redacted]")
}
