package pitest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

func TestFaultStatus(t *testing.T) {
	t.Parallel()
	for _, status := range []int{429, 500, 502, 503} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			s := newFake(t)
			c := newClient(t, s)
			id := s.CreatePayment(pitest.NewPayment{}).Identifier
			s.InjectFault(pitest.EndpointApprove, pitest.Fault{Status: status, Times: 1})

			_, err := c.Approve(t.Context(), id)
			require.Error(t, err)
			assert.Equal(t, status, piclient.StatusCode(err))
			assert.Equal(t, strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_")), piclient.ErrorCode(err))
			assert.True(t, piclient.IsUnavailable(err))
			assert.False(t, mustPayment(t, s, id).Status.DeveloperApproved, "a status fault does not perform the call")

			_, err = c.Approve(t.Context(), id)
			require.NoError(t, err, "Times 1 is used up")
			assert.Equal(t, 2, s.Calls(pitest.EndpointApprove))
		})
	}
}

func TestFaultRetryAfter(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	id := s.CreatePayment(pitest.NewPayment{}).Identifier
	s.InjectFault(pitest.EndpointApprove, pitest.Fault{Status: 429, RetryAfter: 1500 * time.Millisecond, Times: 1})
	r := do(t, "POST", s.URL+"/payments/"+id+"/approve", keyAuth(s), "")
	assert.Equal(t, http.StatusTooManyRequests, r.status)
	assert.Equal(t, "2", r.header.Get("Retry-After"), "rounded up to whole seconds")

	// piclient retries a 429, honouring Retry-After up to its MaxBackoff.
	s.InjectFault(pitest.EndpointApprove, pitest.Fault{Status: 429, RetryAfter: time.Second, Times: 1})
	c := newClient(t, s, func(o *piclient.Options) {
		o.MaxRetries, o.MinBackoff, o.MaxBackoff = 1, time.Millisecond, 20*time.Millisecond
	})
	p, err := c.Approve(t.Context(), id)
	require.NoError(t, err)
	assert.True(t, p.Status.DeveloperApproved)
	assert.Equal(t, 3, s.CallsFor(pitest.EndpointApprove, id))

	// Without retries the Retry-After is visible on the error.
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 429, RetryAfter: 3 * time.Second, Times: 1})
	_, err = newClient(t, s).GetPayment(t.Context(), id)
	var pe *piclient.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 3*time.Second, pe.RetryAfter)
}

func TestFaultDrop(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id := s.CreatePayment(pitest.NewPayment{}).Identifier
	s.InjectFault(pitest.EndpointApprove, pitest.Fault{Drop: true, Times: 1})
	_, err := c.Approve(t.Context(), id)
	require.Error(t, err)
	assert.True(t, piclient.IsUnavailable(err))
	assert.Zero(t, piclient.StatusCode(err), "no answer came")
	assert.False(t, mustPayment(t, s, id).Status.DeveloperApproved, "a dropped call is not performed")
	assert.Equal(t, 1, s.Calls(pitest.EndpointApprove))

	// Reads are retried by piclient; every attempt is dropped and counted.
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Drop: true})
	retrying := newClient(t, s, func(o *piclient.Options) {
		o.MaxRetries, o.MinBackoff, o.MaxBackoff = 2, time.Millisecond, 5*time.Millisecond
	})
	_, err = retrying.GetPayment(t.Context(), id)
	assert.True(t, piclient.IsUnavailable(err), "%v", err)
	assert.Equal(t, 3, s.Calls(pitest.EndpointGet))
}

func TestFaultDropResponse(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id, txid := paidPayment(t, s, c)
	s.InjectFault(pitest.EndpointComplete, pitest.Fault{DropResponse: true, Times: 1})

	_, err := c.Complete(t.Context(), id, txid)
	require.Error(t, err)
	assert.True(t, piclient.IsUnavailable(err))
	assert.Zero(t, piclient.StatusCode(err))
	assert.True(t, mustPayment(t, s, id).Status.DeveloperCompleted, "the call took effect at Pi")

	// What a careful caller then sees.
	_, err = c.Complete(t.Context(), id, txid)
	assert.Equal(t, "already_completed", piclient.ErrorCode(err))
	p, err := c.GetPayment(t.Context(), id)
	require.NoError(t, err)
	assert.True(t, p.IsCompletedWith(txid))
}

func TestFaultMalformed(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id, txid := paidPayment(t, s, c)
	s.InjectFault(pitest.EndpointComplete, pitest.Fault{Malformed: true, Times: 1})
	_, err := c.Complete(t.Context(), id, txid)
	require.Error(t, err)
	assert.True(t, piclient.IsUnavailable(err))
	assert.Equal(t, http.StatusOK, piclient.StatusCode(err))
	assert.True(t, mustPayment(t, s, id).Status.DeveloperCompleted, "the call took effect at Pi")

	// A refused call keeps its status; only the body is broken.
	s.InjectFault(pitest.EndpointComplete, pitest.Fault{Malformed: true, Times: 1})
	r := do(t, "POST", s.URL+"/payments/"+id+"/complete", keyAuth(s), `{"txid":"`+txid+`"}`)
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.False(t, json.Valid(r.body))
	assert.Contains(t, r.header.Get("Content-Type"), "text/html")
}

func TestFaultTruncated(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id := s.CreatePayment(pitest.NewPayment{Memo: "a memo long enough to cut"}).Identifier
	full := do(t, "GET", s.URL+"/payments/"+id, keyAuth(s), "")
	require.Equal(t, http.StatusOK, full.status)

	s.InjectFault(pitest.EndpointGet, pitest.Fault{Truncated: true, Times: 1})
	r := do(t, "GET", s.URL+"/payments/"+id, keyAuth(s), "")
	assert.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, string(full.body[:len(full.body)/2]), string(r.body))
	assert.Equal(t, strconv.Itoa(len(r.body)), r.header.Get("Content-Length"))
	assert.False(t, json.Valid(r.body))

	s.InjectFault(pitest.EndpointApprove, pitest.Fault{Truncated: true, Times: 1})
	_, err := c.Approve(t.Context(), id)
	require.Error(t, err)
	assert.True(t, piclient.IsUnavailable(err))
	assert.Equal(t, http.StatusOK, piclient.StatusCode(err))
	assert.True(t, mustPayment(t, s, id).Status.DeveloperApproved, "the call took effect at Pi")
}

func TestFaultDelay(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id := s.CreatePayment(pitest.NewPayment{}).Identifier

	// A short delay only slows the call down.
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Delay: 50 * time.Millisecond, Times: 1})
	start := time.Now()
	_, err := c.GetPayment(t.Context(), id)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)

	// A client that gives up first sees a timeout.
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Delay: 10 * time.Second, Times: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = c.GetPayment(ctx, id)
	require.Error(t, err)
	assert.True(t, piclient.IsUnavailable(err))
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Less(t, time.Since(start), 5*time.Second)

	// A call whose client went away during the delay is not performed, even
	// once the delay is over.
	const delay = 2 * time.Second
	s.InjectFault(pitest.EndpointApprove, pitest.Fault{Delay: delay, Times: 1})
	ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = c.Approve(ctx, id)
	require.Error(t, err)
	assert.Equal(t, 1, s.Calls(pitest.EndpointApprove))
	time.Sleep(delay + 500*time.Millisecond - time.Since(start))
	assert.False(t, mustPayment(t, s, id).Status.DeveloperApproved)

	_, err = c.Approve(t.Context(), id)
	require.NoError(t, err, "the fault was used up")
}

func TestFaultQueueAndTimes(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id := s.CreatePayment(pitest.NewPayment{}).Identifier
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 500, Times: 2})
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 503, Times: 1})
	var got []int
	for range 4 {
		_, err := c.GetPayment(t.Context(), id)
		got = append(got, piclient.StatusCode(err))
	}
	assert.Equal(t, []int{500, 500, 503, 0}, got)

	// Times 0: every call until ClearFaults, hiding faults queued after it.
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 502})
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 504, Times: 1})
	for range 3 {
		_, err := c.GetPayment(t.Context(), id)
		assert.Equal(t, 502, piclient.StatusCode(err))
	}
	// Faults are per endpoint.
	_, err := c.Approve(t.Context(), id)
	require.NoError(t, err)
	s.ClearFaults()
	_, err = c.GetPayment(t.Context(), id)
	assert.NoError(t, err)
}

func TestFaultFraction(t *testing.T) {
	t.Parallel()
	const n = 200
	pattern := func(seed uint64) []bool {
		s := newFake(t, pitest.Options{Seed: seed})
		c := newClient(t, s)
		id := s.CreatePayment(pitest.NewPayment{}).Identifier
		s.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 500, Fraction: 0.5, Times: 1})
		s.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 503, Times: 1})
		var hit []bool
		var s500, s503 int
		for range n {
			_, err := c.GetPayment(t.Context(), id)
			switch piclient.StatusCode(err) {
			case 500:
				s500++
			case 503:
				s503++
			}
			hit = append(hit, piclient.StatusCode(err) == 500)
		}
		assert.InDelta(t, n/2, s500, n/5, "about half the calls; Times is ignored")
		assert.Equal(t, 1, s503, "calls the fraction misses reach the next fault")
		assert.Equal(t, n, s.Calls(pitest.EndpointGet))
		return hit
	}
	a, b := pattern(42), pattern(42)
	assert.Equal(t, a, b, "the same seed picks the same calls")

	s := newFake(t)
	c := newClient(t, s)
	id := s.CreatePayment(pitest.NewPayment{}).Identifier
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 500, Fraction: 1})
	for range 5 {
		_, err := c.GetPayment(t.Context(), id)
		assert.Equal(t, 500, piclient.StatusCode(err))
	}
}

func TestFaultOnMeAndIncomplete(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	s.AddUser("u", "tok", "bob")
	s.InjectFault(pitest.EndpointMe, pitest.Fault{Status: 503, Times: 1})
	_, err := c.Me(t.Context(), "tok")
	assert.Equal(t, 503, piclient.StatusCode(err))
	_, err = c.Me(t.Context(), "tok")
	assert.NoError(t, err)

	s.InjectFault(pitest.EndpointIncomplete, pitest.Fault{Malformed: true, Times: 1})
	_, err = c.IncompleteServerPayments(t.Context())
	assert.True(t, piclient.IsUnavailable(err))
	_, err = c.IncompleteServerPayments(t.Context())
	assert.NoError(t, err)
}

func TestFaultsComeBeforeAuthentication(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 502, Times: 1})
	r := do(t, "GET", s.URL+"/payments/whatever", "", "")
	assert.Equal(t, http.StatusBadGateway, r.status)
	assert.Equal(t, 1, s.CallsFor(pitest.EndpointGet, "whatever"))
}

func TestSetLatency(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id := s.CreatePayment(pitest.NewPayment{}).Identifier
	s.SetLatency(time.Second)
	start := time.Now()
	_, err := c.GetPayment(t.Context(), id)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), time.Second)

	start = time.Now()
	do(t, "GET", s.ControlURL+"/calls", "", "")
	assert.Less(t, time.Since(start), time.Second, "the control API has no latency")

	s.SetLatency(0)
	start = time.Now()
	_, err = c.GetPayment(t.Context(), id)
	require.NoError(t, err)
	assert.Less(t, time.Since(start), time.Second)
}

func TestInjectFaultPanicsOnBadInput(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	for _, c := range []struct {
		ep pitest.Endpoint
		f  pitest.Fault
	}{
		{"refund", pitest.Fault{Status: 500}},
		{pitest.EndpointGet, pitest.Fault{Status: 200}},
		{pitest.EndpointGet, pitest.Fault{Status: 600}},
		{pitest.EndpointGet, pitest.Fault{Times: -1}},
		{pitest.EndpointGet, pitest.Fault{Fraction: 1.5}},
		{pitest.EndpointGet, pitest.Fault{Delay: -time.Second}},
	} {
		assert.Panics(t, func() { s.InjectFault(c.ep, c.f) }, "%s %+v", c.ep, c.f)
	}
}

func TestCloseEndsDelays(t *testing.T) {
	t.Parallel()
	s := pitest.NewServer()
	id := s.CreatePayment(pitest.NewPayment{}).Identifier
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Delay: time.Minute})
	c := newClient(t, s)
	done := make(chan error, 1)
	go func() { _, err := c.GetPayment(context.Background(), id); done <- err }()
	require.Eventually(t, func() bool { return s.Calls(pitest.EndpointGet) == 1 }, 2*time.Second, 5*time.Millisecond)
	start := time.Now()
	s.Close()
	s.Close() // idempotent
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.True(t, piclient.IsUnavailable(<-done))
}
