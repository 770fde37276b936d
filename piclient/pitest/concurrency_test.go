package pitest_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

func TestConcurrentCompleteOfOnePayment(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id, txid := paidPayment(t, s, c)

	const n = 50
	var ok, already atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			_, err := c.Complete(t.Context(), id, txid)
			switch {
			case err == nil:
				ok.Add(1)
			case piclient.ErrorCode(err) == "already_completed":
				already.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	assert.EqualValues(t, 1, ok.Load(), "exactly one complete succeeds")
	assert.EqualValues(t, n-1, already.Load())
	assert.Equal(t, n, s.CallsFor(pitest.EndpointComplete, id))
	assert.True(t, mustPayment(t, s, id).Status.DeveloperCompleted)
}

func TestConcurrentEverything(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	s.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 503, Fraction: 0.2})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			p := s.CreatePayment(pitest.NewPayment{Direction: []string{piclient.DirectionUserToApp, piclient.DirectionAppToUser}[i%2]})
			if p.Direction == piclient.DirectionUserToApp {
				_, err := c.Approve(t.Context(), p.Identifier)
				assert.NoError(t, err)
			}
			txid, err := s.SubmitTransaction(p.Identifier)
			require.NoError(t, err)
			_, _ = c.GetPayment(t.Context(), p.Identifier)
			_, _ = c.IncompleteServerPayments(t.Context())
			_, err = c.Complete(t.Context(), p.Identifier, txid)
			assert.NoError(t, err)
			_, _ = s.Payment(p.Identifier)
			_ = s.Calls(pitest.EndpointGet)
			s.SetLatency(0)
		})
	}
	wg.Wait()
	assert.Equal(t, 20, s.Calls(pitest.EndpointComplete))
}
