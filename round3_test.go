package piguard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

func TestCredentialsDefaultAndBindings(t *testing.T) {
	h := &Handler{app: "app"}
	req := func(cookie, auth string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return r
	}
	payer := h.credentials(req("sid=0123456789abcdef0123; lang=en; _ga=GA1.2.3", ""), "")
	assert.Len(t, payer, 1, "session-like cookies count, short preferences and analytics ids do not")
	for name, tc := range map[string]struct {
		r    *http.Request
		want bool
	}{
		"same session, other cookies changed": {req("_ga=GA1.9.9; sid=0123456789abcdef0123", ""), true},
		"a shared preference only":            {req("lang=en", ""), false},
		"the session's name, another value":   {req("sid=0123456789abcdef0124", ""), false},
		"nothing":                             {req("", ""), false},
		"a token":                             {req("", "Bearer 0123456789abcdef0123"), false},
	} {
		assert.Equal(t, tc.want, carriesAll(payer, h.credentials(tc.r, "")), name)
	}

	h.Payer = &PayerBinding{From: "cookie", Name: "sid"}
	named := h.credentials(req("sid=abc; other=0123456789abcdef0123", ""), "")
	assert.True(t, carriesAll(named, h.credentials(req("sid=abc", ""), "")), "a named cookie counts whatever its length")
	assert.False(t, carriesAll(named, h.credentials(req("other=0123456789abcdef0123", ""), "")), "and only it")

	assert.Equal(t, []string{h.digest("uid", "", "u1")}, h.credentials(req("sid=abc", "Bearer x"), "u1"), "bind_user: the uid decides")
	assert.Empty(t, (&Handler{app: "app"}).credentials(req("", ""), ""))
}

func TestLooseKeyCatchesNearMatches(t *testing.T) {
	route := looseKey("/payments/complete")
	for _, p := range []string{
		"/payments/complete.xml", "/payments/complete.", "/payments/complete ", "/payments/complete\x00.json",
		"/payments\\complete", "/payments/x/..;/complete", "/paymentſ/complete", "/PAYMENTS/COMPLETE.HTML",
		"/payments/compl%65te", "/payments/complete;a=b/", "/payments/complete.json.html", "/payments/complete::$DATA",
	} {
		assert.Equal(t, route, looseKey(p), "%q", p)
	}
	for _, p := range []string{"/payments/completed", "/payments/complete/x", "/payments/approve", "/orders"} {
		assert.NotEqual(t, route, looseKey(p), "%q", p)
	}
	assert.Equal(t, looseKey("/payments/incomplete"), looseKey("/payments/ıncomplete"), "dotless i folds to i")
}

func FuzzLooseKey(f *testing.F) {
	for _, s := range []string{"/payments/complete", "/a/../b", "%zz", "/\x00", "/ſ.html", "//;/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		k := looseKey(p)
		if !strings.HasPrefix(k, "/") {
			t.Fatalf("looseKey(%q) = %q: not a path", p, k)
		}
		if routeKey(p) == routeKey("/payments/complete") && k != looseKey("/payments/complete") {
			t.Fatalf("%q is a route variant but not a near match", p)
		}
	})
}

func TestBoundedMapEvictsOneByOne(t *testing.T) {
	m := newBoundedMap[int, int](3)
	for i := range 5 {
		m.put(i, i)
	}
	assert.Equal(t, 3, m.len())
	_, old := m.get(1)
	_, recent := m.get(4)
	assert.False(t, old, "the oldest went first")
	assert.True(t, recent)
	m.remove(4)
	m.put(5, 5)
	_, kept := m.get(2)
	assert.True(t, kept, "a freed slot costs no eviction")
}

func TestLookupLimits(t *testing.T) {
	l := newLookups(1000, 2)
	req := func(ip string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = ip + ":1234"
		return r
	}
	refused := 0
	for range 30 {
		if ge := l.admit(req("203.0.113.1")); ge != nil {
			refused++
			assert.Equal(t, http.StatusTooManyRequests, ge.Status)
			assert.Positive(t, ge.retryAfter)
		}
	}
	assert.Equal(t, 30-9, refused, "a burst of four seconds, then refused")
	assert.Nil(t, l.admit(req("203.0.113.2")), "another client goes through")

	// Clients that sent ids Pi did not know share the total bound; a client
	// that never did is bounded by its own limit only.
	total := newLookups(1, 1000)
	for i := range 4 {
		r := req("198.51.100." + string(rune('1'+i)))
		total.missed(r)
		assert.Nil(t, total.admit(r))
	}
	bad := req("198.51.100.9")
	total.missed(bad)
	assert.NotNil(t, total.admit(bad), "the total bound holds across clients that sent made-up ids")
	assert.Nil(t, total.admit(req("203.0.113.50")), "a payer that never sent one goes through")
	six := newLookups(1000, 2)
	for i := range 30 {
		_ = six.admit(req(fmt.Sprintf("2001:db8::%x", i+1)))
	}
	assert.NotNil(t, six.admit(req("2001:db8::ffff")), "one IPv6 /64 is one client")
}

func TestAmountRefusalNamesNoAmount(t *testing.T) {
	h := &Handler{Network: piclient.NetworkTestnet, MinAmount: "5"}
	p := &piclient.Payment{Network: piclient.NetworkTestnet, Direction: piclient.DirectionUserToApp, Amount: "1.2345"}
	ge := h.acceptable(p, &step{})
	require.NotNil(t, ge)
	assert.NotContains(t, ge.Message, "1.2345")
	assert.Contains(t, ge.Message, "at least 5")
}

// slowLockStorage keeps every lock taken, as a storage module keeps a dead
// instance's lock for seconds.
type slowLockStorage struct{ *certmagic.FileStorage }

func (slowLockStorage) Lock(ctx context.Context, _ string) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestStorageLockWaitHasItsOwnAnswer(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := &Handler{APIKey: "pitest-api-key", APIURL: pi.URL, Network: piclient.NetworkTestnet, SigningKey: unitSigningKey, Timeout: caddyDuration(600 * time.Millisecond)}
	require.NoError(t, h.provision(slowLockStorage{&certmagic.FileStorage{Path: t.TempDir()}}))
	t.Cleanup(func() { _ = h.Cleanup() })
	start := time.Now()
	_, ge := h.lockPayment(t.Context(), "somepaymentid")
	require.NotNil(t, ge)
	assert.Equal(t, "storage_busy", ge.Code, "not pi_timeout: Pi was never called")
	assert.True(t, ge.Retryable)
	assert.Equal(t, http.StatusServiceUnavailable, ge.Status)
	assert.Less(t, time.Since(start), 500*time.Millisecond, "bounded like the in-process wait")
	assert.True(t, errors.Is(ge, errStorageBusy))
}

func TestStoresAreKeyedByStorageAndApp(t *testing.T) {
	a := &Handler{store: ledger.New(&certmagic.FileStorage{Path: "/srv/a"}, "pi_guard/k1")}
	b := &Handler{store: ledger.New(&certmagic.FileStorage{Path: "/srv/b"}, "pi_guard/k1")}
	c := &Handler{store: ledger.New(&certmagic.FileStorage{Path: "/srv/a"}, "pi_guard/k1")}
	for _, h := range []*Handler{a, b, c} {
		live.Store(h, struct{}{})
		defer live.Delete(h)
	}
	got := 0
	for _, h := range stores() {
		if h == a || h == b || h == c {
			got++
		}
	}
	assert.Equal(t, 2, got, "one API key on two storages is two stores; the same storage twice is one")
}

// countingStorage counts the watch entries read.
type countingStorage struct {
	*certmagic.FileStorage
	watchReads atomic.Int64
}

func (s *countingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if strings.Contains(key, "/watch/") {
		s.watchReads.Add(1)
	}
	return s.FileStorage.Load(ctx, key)
}

// A reconciler pass reads only the watch entries that are due (or new to
// it), not every entry on every pass.
func TestReconcilerReadsOnlyDueEntries(t *testing.T) {
	storage := &countingStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	w := &reconcileWorld{t: t, app: newNoticeApp(t)}
	w.pi = pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(w.pi.Close)
	w.h, w.reg, w.logs = w.start(storage, func(h *Handler) {
		h.ReconcileAfter, h.ReconcileGiveUp = caddyDuration(time.Hour), caddyDuration(2*time.Hour)
	})
	for range 5 {
		w.approve()
	}
	before := storage.watchReads.Load()
	w.h.reconcileOnce(t.Context())
	first := storage.watchReads.Load()
	assert.Equal(t, int64(5), first-before, "a new reconciler reads each entry once")
	for range 3 {
		w.h.reconcileOnce(t.Context())
	}
	assert.Equal(t, first, storage.watchReads.Load(), "entries not due are not read again")
}

// An approval whose outcome at Pi is unknown (Pi's answer and the re-read
// lost) still remembers its approver and watches the payment: the payer's
// retry goes through, a stranger's does not, and the reconciler knows it.
func TestApprovalWithLostAnswerKeepsItsPayer(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	var approved atomic.Bool
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && approved.Load() {
			http.Error(w, "<html>down</html>", http.StatusBadGateway) // the re-read is lost too
			return
		}
		if strings.HasSuffix(r.URL.Path, "/approve") {
			approved.Store(true)
		}
		pi.Handler().ServeHTTP(w, r)
	}))
	defer front.Close()
	pi.InjectFault(pitest.EndpointApprove, pitest.Fault{DropResponse: true, Times: 1})
	h := newTestHandler(t, front.URL+"/v2")
	p := pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	app := newCapturingApp(t, http.StatusOK)

	w := post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	require.Equal(t, http.StatusBadGateway, w.Code, w.Body.String())
	got, _ := pi.Payment(p.Identifier)
	require.True(t, got.Status.DeveloperApproved, "Pi approved it; the guard could not tell")
	assert.NotNil(t, h.watched.Queued(p.Identifier), "watched all the same")

	approved.Store(false) // Pi answers again
	w = post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`, "Cookie", "")
	assert.Equal(t, http.StatusConflict, w.Code, "a stranger: %s", w.Body.String())
	w = post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`)
	assert.Equal(t, http.StatusOK, w.Code, "the payer's retry: %s", w.Body.String())
}

// A stranger's completion never decides the host the app sees: the payer's
// approve's host, or none (the app's own address) when no payer is known.
func TestStrangerCannotPickTheHost(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	app := newCapturingApp(t, http.StatusOK)
	for _, viaGuard := range []bool{true, false} {
		p := pi.CreatePayment(pitest.NewPayment{Amount: "1"})
		if viaGuard {
			require.Equal(t, http.StatusOK, post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`).Code) // host example.com
		} else {
			c, err := piclient.New(piclient.Options{BaseURL: pi.URL, APIKey: pitest.DefaultAPIKey})
			require.NoError(t, err)
			_, err = c.Approve(t.Context(), p.Identifier) // approved elsewhere
			require.NoError(t, err)
		}
		txid, err := pi.SubmitTransaction(p.Identifier)
		require.NoError(t, err)
		r := httptest.NewRequest(http.MethodPost, DefaultCompletePath, strings.NewReader(completeBody(p.Identifier, txid)))
		r.Host = "evil.example"
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		require.NoError(t, h.ServeHTTP(w, r, app))
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		reqs := app.requests()
		got := reqs[len(reqs)-1]
		require.NotNil(t, got.claims)
		assert.NotEqual(t, "evil.example", got.host, "via guard %v", viaGuard)
		if viaGuard {
			assert.Equal(t, "example.com", got.host, "the payer's approve's host")
		}
	}
}

// The payer's own session repeating completions with made-up txids for its
// approved payment costs Pi calls within the client's bound only.
func TestOneClientsPiCallsAreBounded(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	app := newCapturingApp(t, http.StatusOK)
	p := pi.CreatePayment(pitest.NewPayment{})
	require.Equal(t, http.StatusOK, post(h, app, DefaultApprovePath, `{"paymentId":"`+p.Identifier+`"}`).Code)
	pi.ResetCalls()
	limited := 0
	for i := range 200 {
		w := post(h, app, DefaultCompletePath, completeBody(p.Identifier, fmt.Sprintf("%064x", i+1)))
		require.NotEqual(t, http.StatusOK, w.Code)
		if w.Code == http.StatusTooManyRequests {
			limited++
		}
	}
	calls := pi.Calls(pitest.EndpointGet) + pi.Calls(pitest.EndpointComplete)
	assert.LessOrEqual(t, calls, 5*callsPerLookup*lookupBurst+10, "200 posts from one client cost %d Pi calls", calls)
	assert.Positive(t, limited)
}

// Without redeliver_to, clients' retries are the only redelivery: a payment
// whose payer the guard cannot recognise (approved elsewhere) is still
// delivered by anyone's retry once its next attempt is due, and a flood of
// retries reaches a failing app at most once per backoff step.
func TestUnknownPayerIsStillDeliveredWithoutAWorker(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	defer pi.Close()
	h := newTestHandler(t, pi.URL)
	h.RedeliverBackoff = caddyDuration(300 * time.Millisecond)
	app := newCapturingApp(t, http.StatusServiceUnavailable)
	p := pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	c, err := piclient.New(piclient.Options{BaseURL: pi.URL, APIKey: pitest.DefaultAPIKey})
	require.NoError(t, err)
	_, err = c.Approve(t.Context(), p.Identifier) // approved elsewhere: no payer known
	require.NoError(t, err)
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	body := completeBody(p.Identifier, txid)
	require.Equal(t, http.StatusBadGateway, post(h, app, DefaultCompletePath, body).Code, "the app fails")
	for range 20 {
		post(h, app, DefaultCompletePath, body)
	}
	assert.Len(t, app.requests(), 1, "retries before the next attempt is due do not reach the app")
	time.Sleep(700 * time.Millisecond)
	app.set(http.StatusOK, nil)
	w := post(h, app, DefaultCompletePath, body)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Len(t, app.requests(), 2, "a due retry delivers it")
	assert.Eventually(t, func() bool { // the mark is written after the answer
		rec, err := h.store.Load(t.Context(), p.Identifier)
		return err == nil && rec.Delivery.State == ledger.Delivered
	}, 2*time.Second, 10*time.Millisecond)
}
