package piclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// assertFullPayment checks every field of fullPaymentJSON(testID).
func assertFullPayment(t *testing.T, p *piclient.Payment) {
	t.Helper()
	require.NotNil(t, p)
	assert.Equal(t, testID, p.Identifier)
	assert.Equal(t, "user-0a1b2c3d", p.UserUID)
	assert.Equal(t, piclient.Amount("3.14159265358979323846"), p.Amount, "amount text kept exactly")
	assert.Equal(t, `Order #42 "deluxe"`, p.Memo)
	assert.Equal(t, testMetadata, string(p.Metadata), "metadata kept byte for byte")
	assert.Equal(t, "GAUSERADDRESS", p.FromAddress)
	assert.Equal(t, "GAAPPADDRESS", p.ToAddress)
	assert.Equal(t, piclient.DirectionUserToApp, p.Direction)
	assert.Equal(t, "2024-01-02T03:04:05.678Z", p.CreatedAt)
	assert.Equal(t, piclient.NetworkTestnet, p.Network)
	assert.Equal(t, piclient.Status{
		DeveloperApproved:   true,
		TransactionVerified: true,
		DeveloperCompleted:  false,
		Cancelled:           false,
		UserCancelled:       true,
	}, p.Status)
	require.NotNil(t, p.Transaction)
	assert.Equal(t, piclient.Transaction{
		TxID:     testTxID,
		Verified: true,
		Link:     "https://api.testnet.minepi.com/transactions/" + testTxID,
	}, *p.Transaction)
	assert.Equal(t, testTxID, p.TxID())
	assert.True(t, p.IsCancelled())
	assert.False(t, p.IsCompletedWith(testTxID), "not developer_completed")
}

func TestGetPayment(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, fullPaymentJSON(testID))
	})
	c := newClient(t, f.URL())

	p, err := c.GetPayment(context.Background(), testID)
	require.NoError(t, err)
	assertFullPayment(t, p)

	reqs := f.Requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	assert.Equal(t, http.MethodGet, r.Method)
	assert.Equal(t, "/payments/"+testID, r.Path)
	assert.Empty(t, r.RawQuery)
	assert.Equal(t, "Key "+testKey, r.Auth)
	assert.Equal(t, "application/json", r.Accept)
	assert.Equal(t, "caddy-pi-guard", r.UserAgent, "default user agent")
	assert.Empty(t, r.ContentType, "a GET has no body")
	assert.Empty(t, r.Body)
	assert.EqualValues(t, 1, c.Attempts())
}

func TestGetPaymentWithoutTransaction(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, minimalPaymentJSON(testID))
	})
	c := newClient(t, f.URL())

	p, err := c.GetPayment(context.Background(), testID)
	require.NoError(t, err)
	assert.Nil(t, p.Transaction, "transaction: null")
	assert.Equal(t, "", p.TxID())
	assert.Equal(t, "null", string(p.Metadata))
	assert.Equal(t, piclient.Amount("1.5"), p.Amount)
	assert.Equal(t, piclient.NetworkMainnet, p.Network)
	assert.Equal(t, piclient.Status{}, p.Status)
	assert.False(t, p.IsCancelled())
	assert.False(t, p.IsCompletedWith(testTxID))
}

func TestPostCalls(t *testing.T) {
	wantBody := map[string]string{
		"approve":  "",
		"complete": `{"txid":"` + testTxID + `"}`,
		"cancel":   "",
	}
	calls := map[string]func(*piclient.Client) (*piclient.Payment, error){
		"approve": func(c *piclient.Client) (*piclient.Payment, error) { return c.Approve(context.Background(), testID) },
		"complete": func(c *piclient.Client) (*piclient.Payment, error) {
			return c.Complete(context.Background(), testID, testTxID)
		},
		"cancel": func(c *piclient.Client) (*piclient.Payment, error) { return c.Cancel(context.Background(), testID) },
	}
	for op, call := range calls {
		t.Run(op, func(t *testing.T) {
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, fullPaymentJSON(testID))
			})
			c := newClient(t, f.URL(), func(o *piclient.Options) { o.UserAgent = "my-app/1.0" })

			p, err := call(c)
			require.NoError(t, err)
			assertFullPayment(t, p)

			reqs := f.Requests()
			require.Len(t, reqs, 1)
			r := reqs[0]
			assert.Equal(t, http.MethodPost, r.Method)
			assert.Equal(t, "/payments/"+testID+"/"+op, r.Path)
			assert.Equal(t, "Key "+testKey, r.Auth)
			assert.Equal(t, "application/json", r.Accept)
			assert.Equal(t, "my-app/1.0", r.UserAgent)
			if want := wantBody[op]; want != "" {
				assert.Equal(t, "application/json", r.ContentType)
				assert.JSONEq(t, want, string(r.Body))
				assert.Equal(t, want, string(r.Body), "exact body")
			} else {
				assert.Empty(t, r.ContentType)
				assert.Empty(t, r.Body)
			}
		})
	}
}

// Pi and Horizon write txids in lower case and compare them exactly: an
// upper-case txid (valid hex) is sent in lower case.
func TestCompleteSendsLowerCaseTxID(t *testing.T) {
	upper := strings.ToUpper(testTxID)
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, minimalPaymentJSON(testID))
	})
	c := newClient(t, f.URL())
	_, err := c.Complete(context.Background(), testID, upper)
	require.NoError(t, err)
	assert.Equal(t, `{"txid":"`+testTxID+`"}`, string(f.Requests()[0].Body))
}

func TestIncompleteServerPayments(t *testing.T) {
	t.Run("list", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, `{"incomplete_server_payments":[`+fullPaymentJSON(testID)+`,`+minimalPaymentJSON("other_id-2")+`]}`)
		})
		c := newClient(t, f.URL())
		ps, err := c.IncompleteServerPayments(context.Background())
		require.NoError(t, err)
		require.Len(t, ps, 2)
		assertFullPayment(t, &ps[0])
		assert.Equal(t, "other_id-2", ps[1].Identifier)
		assert.Nil(t, ps[1].Transaction)

		r := f.Requests()[0]
		assert.Equal(t, http.MethodGet, r.Method)
		assert.Equal(t, "/payments/incomplete_server_payments", r.Path)
		assert.Equal(t, "Key "+testKey, r.Auth)
	})
	t.Run("empty", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, `{"incomplete_server_payments":[]}`)
		})
		ps, err := newClient(t, f.URL()).IncompleteServerPayments(context.Background())
		require.NoError(t, err)
		assert.NotNil(t, ps)
		assert.Empty(t, ps)
	})
	for name, body := range map[string]string{
		"missing field": `{}`,
		"null field":    `{"incomplete_server_payments":null}`,
		"null answer":   `null`,
		"wrong type":    `{"incomplete_server_payments":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, body)
			})
			_, err := newClient(t, f.URL(), withRetries(-1)).IncompleteServerPayments(context.Background())
			require.Error(t, err)
			assert.True(t, piclient.IsUnavailable(err))
			assert.False(t, piclient.IsRejected(err))
			assert.Equal(t, http.StatusOK, piclient.StatusCode(err))
		})
	}
}

const userJSON = `{"uid":"f1e2d3c4-user","credentials":{"scopes":["payments","username"],` +
	`"valid_until":{"timestamp":1735689600,"iso8601":"2025-01-01T00:00:00Z"}},"username":"pioneer"}`

func TestMe(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, userJSON)
	})
	c := newClient(t, f.URL())

	u, err := c.Me(context.Background(), testToken)
	require.NoError(t, err)
	assert.Equal(t, &piclient.User{
		UID: "f1e2d3c4-user",
		Credentials: piclient.Credentials{
			Scopes:     []string{"payments", "username"},
			ValidUntil: piclient.ValidUntil{Timestamp: 1735689600, ISO8601: "2025-01-01T00:00:00Z"},
		},
		Username: "pioneer",
	}, u)

	r := f.Requests()[0]
	assert.Equal(t, http.MethodGet, r.Method)
	assert.Equal(t, "/me", r.Path)
	assert.Equal(t, "Bearer "+testToken, r.Auth, "the user's token, not the API key")
	assert.NotContains(t, r.Auth, testKey)
}

func TestMeWithoutUsername(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, `{"uid":"u","credentials":{"scopes":[],"valid_until":{"timestamp":1,"iso8601":"x"}}}`)
	})
	u, err := newClient(t, f.URL()).Me(context.Background(), testToken)
	require.NoError(t, err)
	assert.Equal(t, "", u.Username)
	b, err := json.Marshal(u)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "username", "omitempty")
}

func TestMeErrors(t *testing.T) {
	t.Run("401", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusUnauthorized, `{"error":"unauthorized","error_message":"token expired"}`)
		})
		c := newClient(t, f.URL())
		_, err := c.Me(context.Background(), testToken)
		require.Error(t, err)
		assert.True(t, piclient.IsUnauthorized(err))
		assert.True(t, piclient.IsRejected(err))
		assert.Equal(t, 1, f.Hits(), "a rejection is not retried")
	})
	t.Run("no uid", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, `{"credentials":{}}`)
		})
		_, err := newClient(t, f.URL()).Me(context.Background(), testToken)
		require.Error(t, err)
		assert.True(t, piclient.IsUnavailable(err))
		assert.Contains(t, err.Error(), "no uid")
	})
}

func TestMeRefusesMalformedTokens(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, userJSON)
	})
	c := newClient(t, f.URL())
	for _, tok := range []string{
		"", " ", "abc def", " abc", "abc ", "abc\n", "abc\r\nX-Injected: 1", "tok\x00", "tok\t", "tok\x7f",
		"tök", "\xff\xfe", strings.Repeat("a", 4097),
	} {
		_, err := c.Me(context.Background(), tok)
		require.Error(t, err, "%q", tok)
		assert.True(t, piclient.IsInvalid(err), "%q", tok)
		assert.ErrorIs(t, err, piclient.ErrInvalidToken)
		assert.False(t, piclient.IsUnavailable(err))
		assert.False(t, piclient.IsRejected(err))
		if tok != "" && tok != " " {
			assert.NotContains(t, err.Error(), tok, "the token is not echoed")
		}
	}
	assert.Equal(t, 0, f.Hits())
	assert.EqualValues(t, 0, c.Attempts())

	_, err := c.Me(context.Background(), strings.Repeat("a", 4096))
	require.NoError(t, err, "4096 printable characters are accepted")
}

func TestValidationBeforeAnyRequest(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, minimalPaymentJSON(testID))
	})
	c := newClient(t, f.URL())
	ctx := context.Background()

	badIDs := []string{
		"", "../x", "a/b", "a%2Fb", "a b", "a\n", "paymént", strings.Repeat("a", 65), "..", ".", "a.b",
		"a?b", "a#b", "a\x00", "a\\b", "%2e%2e", "ａ", "a;b", "a+b",
	}
	for _, id := range badIDs {
		for name, call := range map[string]func() error{
			"get":      func() error { _, err := c.GetPayment(ctx, id); return err },
			"approve":  func() error { _, err := c.Approve(ctx, id); return err },
			"complete": func() error { _, err := c.Complete(ctx, id, testTxID); return err },
			"cancel":   func() error { _, err := c.Cancel(ctx, id); return err },
		} {
			err := call()
			require.Error(t, err, "%s %q", name, id)
			assert.ErrorIs(t, err, piclient.ErrInvalidPaymentID, "%s %q", name, id)
			assert.True(t, piclient.IsInvalid(err))
			assert.False(t, piclient.IsUnavailable(err), "%s %q: invalid is not unavailable", name, id)
			assert.False(t, piclient.IsRejected(err))
			var e *piclient.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, name, e.Op)
			assert.False(t, e.Unavailable(), "method agrees with IsUnavailable")
			assert.False(t, e.Rejected())
			assert.Empty(t, e.PaymentID, "an invalid id is not echoed")
		}
	}

	badTxIDs := []string{
		"", testTxID[:63], testTxID + "0", "g" + testTxID[1:], " " + testTxID[1:], "0x" + testTxID[2:],
		testTxID[:63] + "\n", testTxID[:62] + "é",
	}
	for _, txid := range badTxIDs {
		_, err := c.Complete(ctx, testID, txid)
		require.Error(t, err, "%q", txid)
		assert.ErrorIs(t, err, piclient.ErrInvalidTxID)
		assert.True(t, piclient.IsInvalid(err))
		assert.False(t, piclient.IsUnavailable(err))
		var e *piclient.Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, "complete", e.Op)
		assert.Equal(t, testID, e.PaymentID)
	}

	assert.Equal(t, 0, f.Hits(), "no request for invalid input")
	assert.EqualValues(t, 0, c.Attempts())
}

func TestValidIDsReachTheServer(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/payments/"), "/complete")
		writeJSON(w, http.StatusOK, minimalPaymentJSON(id))
	})
	c := newClient(t, f.URL())
	for _, id := range []string{testID, "a", "-", "_", "pay-ment_ID-09", strings.Repeat("Z", 64)} {
		p, err := c.GetPayment(context.Background(), id)
		require.NoError(t, err, id)
		assert.Equal(t, id, p.Identifier)
	}
	_, err := c.Complete(context.Background(), testID, strings.ToUpper(testTxID))
	require.NoError(t, err, "uppercase hex txid")
}

func TestNew(t *testing.T) {
	t.Run("missing key", func(t *testing.T) {
		_, err := piclient.New(piclient.Options{BaseURL: "https://example.com"})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "API key is required")
	})
	t.Run("key with line break or control character", func(t *testing.T) {
		for _, k := range []string{"abc\n", "ab\rc", "abc\x00", "a\tb", "ab\x7f"} {
			_, err := piclient.New(piclient.Options{APIKey: k})
			require.Error(t, err, "%q", k)
			assert.NotContains(t, err.Error(), k)
		}
	})
	t.Run("bad base URLs", func(t *testing.T) {
		for _, u := range []string{
			"ftp://example.com", "example.com", "/v2", "http://", "https:///v2", "http:example.com",
			"://x", "http://[::1", "https://api.example.com/v2?debug=1", "https://api.example.com/v2?",
			"https://api.example.com/v2#frag",
		} {
			_, err := piclient.New(piclient.Options{APIKey: testKey, BaseURL: u})
			require.Error(t, err, u)
			assert.Contains(t, err.Error(), "base URL", u)
			assert.NotContains(t, err.Error(), testKey)
		}
	})
	t.Run("base URL password not shown", func(t *testing.T) {
		_, err := piclient.New(piclient.Options{APIKey: testKey, BaseURL: "ftp://user:hunter2@example.com"})
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "hunter2")

		c, err := piclient.New(piclient.Options{APIKey: testKey, BaseURL: "https://user:hunter2@example.com/v2"})
		require.NoError(t, err)
		assert.NotContains(t, c.String(), "hunter2")
		assert.Equal(t, "https://user:hunter2@example.com/v2", c.BaseURL())
	})
	t.Run("trailing slashes trimmed", func(t *testing.T) {
		for in, want := range map[string]string{
			"https://api.example.com/v2/":   "https://api.example.com/v2",
			"https://api.example.com/v2///": "https://api.example.com/v2",
			"http://127.0.0.1:8080/":        "http://127.0.0.1:8080",
			"http://127.0.0.1:8080":         "http://127.0.0.1:8080",
		} {
			c, err := piclient.New(piclient.Options{APIKey: testKey, BaseURL: in})
			require.NoError(t, err, in)
			assert.Equal(t, want, c.BaseURL())
		}
	})
	t.Run("trailing slash gives clean paths", func(t *testing.T) {
		f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, minimalPaymentJSON(testID))
		})
		c := newClient(t, f.URL()+"/v2/")
		_, err := c.GetPayment(context.Background(), testID)
		require.NoError(t, err)
		assert.Equal(t, "/v2/payments/"+testID, f.Requests()[0].Path)
	})
	t.Run("defaults", func(t *testing.T) {
		c, err := piclient.New(piclient.Options{APIKey: testKey})
		require.NoError(t, err)
		assert.Equal(t, piclient.DefaultBaseURL, c.BaseURL())
		assert.Equal(t, "https://api.minepi.com/v2", c.BaseURL())
		assert.EqualValues(t, 0, c.Attempts(), "New makes no request")
	})
	t.Run("String hides the key", func(t *testing.T) {
		c := newClient(t, "https://api.example.com/v2")
		for _, s := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v %s", c, c, c)} {
			assert.NotContains(t, s, testKey)
			assert.Contains(t, s, "https://api.example.com/v2")
		}
		assert.NotContains(t, fmt.Sprintf("%#v", c), testKey)
	})
	t.Run("caller's http.Client is not modified", func(t *testing.T) {
		hc := &http.Client{Transport: freshTransport()}
		_ = newClient(t, "https://api.example.com", withHTTPClient(hc))
		assert.Nil(t, hc.CheckRedirect)
	})
}

func TestConcurrentUse(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/payments/"), "/approve")
		writeJSON(w, http.StatusOK, minimalPaymentJSON(id))
	})
	c := newClient(t, f.URL())
	const n = 16
	errs := make(chan error, 2*n)
	for i := range n {
		id := fmt.Sprintf("pay_%02d", i)
		go func() {
			_, err := c.GetPayment(context.Background(), id)
			errs <- err
		}()
		go func() {
			_, err := c.Approve(context.Background(), id)
			errs <- err
		}()
	}
	for range 2 * n {
		require.NoError(t, <-errs)
	}
	assert.EqualValues(t, 2*n, c.Attempts())
	assert.Equal(t, 2*n, f.Hits())
}

func TestAttemptsCountsRetries(t *testing.T) {
	f := newFakePi(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, `{}`)
	})
	c := newClient(t, f.URL(), withRetries(2))
	_, err := c.GetPayment(context.Background(), testID)
	require.Error(t, err)
	assert.EqualValues(t, 3, c.Attempts())
	assert.Equal(t, 3, f.Hits())
}

func TestObserveSeesEveryAttempt(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if hits == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"identifier":"abc","amount":1,"status":{},"transaction":null}`)
	}))
	defer srv.Close()
	c, err := piclient.New(piclient.Options{BaseURL: srv.URL, APIKey: "k", MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
		Observe: func(op string, status int, took time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, fmt.Sprintf("%s %d", op, status))
			assert.Positive(t, took)
		}})
	require.NoError(t, err)
	_, err = c.GetPayment(t.Context(), "abc")
	require.NoError(t, err)
	srv.Close()
	_, err = c.GetPayment(t.Context(), "abc")
	require.Error(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"get 503", "get 200", "get 0"}, seen[:3])
}
