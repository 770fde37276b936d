package pitest_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

func TestAuthentication(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	id := s.CreatePayment(pitest.NewPayment{}).Identifier
	for _, auth := range []string{"", "Key ", "Key wrong", "key " + s.APIKey, "Bearer " + s.APIKey, s.APIKey, "Key  " + s.APIKey} {
		r := do(t, "GET", s.URL+"/payments/"+id, auth, "")
		assert.Equal(t, http.StatusUnauthorized, r.status, "auth %q", auth)
		code, _ := r.errorBody(t)
		assert.Equal(t, "unauthorized", code, "auth %q", auth)
	}
	r := do(t, "GET", s.URL+"/payments/"+id, keyAuth(s), "")
	assert.Equal(t, http.StatusOK, r.status)
	assert.Contains(t, r.header.Get("Content-Type"), "application/json")

	c := newClient(t, s, func(o *piclient.Options) { o.APIKey = "wrong" })
	_, err := c.Approve(t.Context(), id)
	assert.True(t, piclient.IsUnauthorized(err), "%v", err)
	assert.False(t, mustPayment(t, s, id).Status.DeveloperApproved)
}

func TestAppsSeeOnlyTheirPayments(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	s.AddApp("other-key")
	mine := newClient(t, s)
	other := newClient(t, s, func(o *piclient.Options) { o.APIKey = "other-key" })

	theirs := s.CreatePayment(pitest.NewPayment{APIKey: "other-key"})
	assert.NotEqual(t, s.Wallet, theirs.ToAddress, "each app has its own wallet")
	ours := s.CreatePayment(pitest.NewPayment{})

	for _, c := range []struct {
		c  *piclient.Client
		id string
	}{{mine, theirs.Identifier}, {other, ours.Identifier}} {
		_, err := c.c.GetPayment(t.Context(), c.id)
		assert.True(t, piclient.IsNotFound(err), "%v", err)
		assert.Equal(t, "payment_not_found", piclient.ErrorCode(err))
		_, err = c.c.Approve(t.Context(), c.id)
		assert.True(t, piclient.IsNotFound(err), "%v", err)
		_, err = c.c.Cancel(t.Context(), c.id)
		assert.True(t, piclient.IsNotFound(err), "%v", err)
	}
	_, err := other.Approve(t.Context(), theirs.Identifier)
	require.NoError(t, err)
	assert.False(t, mustPayment(t, s, ours.Identifier).Status.DeveloperApproved)
	assert.False(t, mustPayment(t, s, ours.Identifier).Status.Cancelled)

	// CreatePayment registers an unknown key.
	third := s.CreatePayment(pitest.NewPayment{APIKey: "third-key"})
	c3 := newClient(t, s, func(o *piclient.Options) { o.APIKey = "third-key" })
	_, err = c3.GetPayment(t.Context(), third.Identifier)
	assert.NoError(t, err)
}

func TestRouting(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	id := s.CreatePayment(pitest.NewPayment{}).Identifier
	base := s.URL[:len(s.URL)-len("/v2")]
	for _, path := range []string{"/v2/payments", "/v2/payments/", "/v2/payments/" + id + "/", "/v2/payments/" + id + "/refund",
		"/v2/me/x", "/v1/payments/" + id, "/", "/v2", "/control/nope"} {
		r := do(t, "GET", base+path, keyAuth(s), "")
		assert.Equal(t, http.StatusNotFound, r.status, path)
		code, _ := r.errorBody(t)
		assert.Equal(t, "not_found", code, path)
	}
	for _, c := range []struct{ method, path, allow string }{
		{"POST", "/v2/payments/" + id, "GET"},
		{"DELETE", "/v2/payments/" + id, "GET"},
		{"GET", "/v2/payments/" + id + "/approve", "POST"},
		{"PUT", "/v2/payments/" + id + "/complete", "POST"},
		{"GET", "/v2/payments/" + id + "/cancel", "POST"},
		{"POST", "/v2/payments/incomplete_server_payments", "GET"},
		{"POST", "/v2/me", "GET"},
	} {
		r := do(t, c.method, base+c.path, keyAuth(s), "")
		assert.Equal(t, http.StatusMethodNotAllowed, r.status, c.path)
		assert.Equal(t, c.allow, r.header.Get("Allow"), c.path)
		code, _ := r.errorBody(t)
		assert.Equal(t, "method_not_allowed", code, c.path)
	}
	for _, ep := range pitest.Endpoints {
		assert.Zero(t, s.Calls(ep), "unrouted requests are not counted: %s", ep)
	}
}

func TestIncompleteServerPayments(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)

	r := do(t, "GET", s.URL+"/payments/incomplete_server_payments", keyAuth(s), "")
	assert.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `{"incomplete_server_payments":[]}`, string(r.body))

	a2u := func() string {
		return s.CreatePayment(pitest.NewPayment{Direction: piclient.DirectionAppToUser}).Identifier
	}
	open1, open2, paid, completed, cancelled, userCancelled := a2u(), a2u(), a2u(), a2u(), a2u(), a2u()
	_ = s.CreatePayment(pitest.NewPayment{})                                                        // user-to-app: never listed
	_ = s.CreatePayment(pitest.NewPayment{Direction: piclient.DirectionAppToUser, APIKey: "other"}) // another app's

	_, err := s.SubmitTransaction(paid)
	require.NoError(t, err)
	txid, err := s.SubmitTransaction(completed)
	require.NoError(t, err)
	_, err = c.Complete(t.Context(), completed, txid)
	require.NoError(t, err)
	_, err = c.Cancel(t.Context(), cancelled)
	require.NoError(t, err)
	require.NoError(t, s.UserCancel(userCancelled))

	list, err := c.IncompleteServerPayments(t.Context())
	require.NoError(t, err)
	var ids []string
	for _, p := range list {
		ids = append(ids, p.Identifier)
		assert.Equal(t, piclient.DirectionAppToUser, p.Direction)
	}
	assert.Equal(t, []string{open1, open2, paid}, ids, "oldest first")
	assert.Equal(t, 2, s.Calls(pitest.EndpointIncomplete), "raw request plus client call")
	assert.Equal(t, 2, s.CallsFor(pitest.EndpointIncomplete, ""))

	_, err = newClient(t, s, func(o *piclient.Options) { o.APIKey = "bad" }).IncompleteServerPayments(t.Context())
	assert.True(t, piclient.IsUnauthorized(err))
}

func TestMe(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	s.AddUser("uid-1", "token-1", "alice")
	s.AddUser("uid-2", "token-2", "")

	before := time.Now()
	u, err := c.Me(t.Context(), "token-1")
	require.NoError(t, err)
	assert.Equal(t, "uid-1", u.UID)
	assert.Equal(t, "alice", u.Username)
	assert.Equal(t, []string{"username", "payments"}, u.Credentials.Scopes)
	valid := time.Unix(u.Credentials.ValidUntil.Timestamp, 0)
	assert.WithinDuration(t, before.Add(pitest.TokenLifetime), valid, 2*time.Second)
	iso, err := time.Parse(time.RFC3339, u.Credentials.ValidUntil.ISO8601)
	require.NoError(t, err)
	assert.True(t, iso.Equal(valid))

	u, err = c.Me(t.Context(), "token-2")
	require.NoError(t, err)
	assert.Equal(t, []string{"payments"}, u.Credentials.Scopes)
	assert.Empty(t, u.Username)
	r := do(t, "GET", s.URL+"/me", "Bearer token-2", "")
	assert.NotContains(t, string(r.body), "username")

	_, err = c.Me(t.Context(), "unknown")
	assert.True(t, piclient.IsUnauthorized(err), "%v", err)
	assert.Equal(t, "unauthorized", piclient.ErrorCode(err))

	s.ExpireToken("token-1")
	_, err = c.Me(t.Context(), "token-1")
	assert.True(t, piclient.IsUnauthorized(err), "expired: %v", err)

	for _, auth := range []string{"", keyAuth(s), "Bearer ", "bearer token-2"} {
		r := do(t, "GET", s.URL+"/me", auth, "")
		assert.Equal(t, http.StatusUnauthorized, r.status, "auth %q", auth)
	}
	assert.Equal(t, 9, s.Calls(pitest.EndpointMe))
}

func TestCallCounts(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id, txid := paidPayment(t, s, c)
	other := s.CreatePayment(pitest.NewPayment{}).Identifier
	_, _ = c.GetPayment(t.Context(), id)
	_, _ = c.GetPayment(t.Context(), id)
	_, _ = c.GetPayment(t.Context(), other)
	_, _ = c.Complete(t.Context(), id, txid)
	_, _ = c.Complete(t.Context(), id, txid) // rejected calls count too
	_, _ = c.Cancel(t.Context(), other)
	do(t, "GET", s.HorizonURL+"/transactions/"+txid, "", "")
	do(t, "GET", s.HorizonURL+"/transactions/"+txid+"/operations", "", "")
	do(t, "GET", s.HorizonURL+"/transactions/"+otherTxID, "", "")

	assert.Equal(t, 3, s.Calls(pitest.EndpointGet))
	assert.Equal(t, 2, s.CallsFor(pitest.EndpointGet, id))
	assert.Equal(t, 1, s.CallsFor(pitest.EndpointGet, other))
	assert.Equal(t, 1, s.Calls(pitest.EndpointApprove))
	assert.Equal(t, 2, s.CallsFor(pitest.EndpointComplete, id))
	assert.Equal(t, 1, s.Calls(pitest.EndpointCancel))
	assert.Equal(t, 0, s.CallsFor(pitest.EndpointCancel, id))
	assert.Equal(t, 3, s.Calls(pitest.EndpointHorizon))
	assert.Equal(t, 2, s.CallsFor(pitest.EndpointHorizon, id))
	assert.Equal(t, 1, s.CallsFor(pitest.EndpointHorizon, ""))

	s.ResetCalls()
	for _, ep := range pitest.Endpoints {
		assert.Zero(t, s.Calls(ep), ep)
	}
	assert.Zero(t, s.CallsFor(pitest.EndpointGet, id))
}

func TestHandler(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	p := s.CreatePayment(pitest.NewPayment{})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	c, err := piclient.New(piclient.Options{BaseURL: ts.URL + "/v2", APIKey: s.APIKey, MaxRetries: -1})
	require.NoError(t, err)
	got, err := c.Approve(t.Context(), p.Identifier)
	require.NoError(t, err)
	assert.True(t, got.Status.DeveloperApproved)

	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v2/payments/"+p.Identifier, nil))
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
}
