package piclient_test

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
